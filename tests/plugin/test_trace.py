"""--parity-trace through pytest: a failing pair comparison or @parity_test case says where the
port goes wrong, in its failure text, its JSON record and a picture; off turns it off."""

import json

import pytest

from tests.support.frameworks import needs_frameworks

pytest.importorskip("torch")
pytest.importorskip("flax")

# A small registered pair whose Flax BatchNorm has Keras' epsilon (1e-3 against torch's 1e-5),
# and the same pair ported right.
PAIRS = """
import numpy as np
import pytest
from pytest_parity.mapping import Mapping
from pytest_parity.mapping.layer_rules import batch_norm_rules, conv_rules, linear_rules
from pytest_parity.registry import Pair, register

MAPPING = Mapping("small", (*conv_rules("0", "conv", bias=True), *batch_norm_rules("1", "bn"),
                            *linear_rules("4", "fc")))


def torch_small():
    import torch
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                               torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 36, 5))


def flax_small(epsilon):
    import flax.linen as nn

    class Small(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)), name="conv")(x)
            x = nn.relu(nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=epsilon,
                                     name="bn")(x))
            return nn.Dense(5, name="fc")(x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1))

    return Small()


for name, epsilon in (("small_right", 1e-5), ("small_keras_epsilon", 1e-3)):
    register(Pair(name, torch_small, lambda epsilon=epsilon: flax_small(epsilon), MAPPING,
                  (2, 3, 6, 6)))

IMAGES = np.random.RandomState(0).normal(0, 3, (2, 3, 6, 6)).astype(np.float32)


@pytest.mark.parity
@pytest.mark.parametrize("name", ["small_right", "small_keras_epsilon"])
def test_pair(parity_pair, name):
    parity_pair(name).assert_close(IMAGES, name=name)
"""


def _records(pytester):
    return {r["name"]: r for r in json.loads((pytester.path / "r.json").read_text())["records"]}


@needs_frameworks
def test_a_failing_pair_says_where_in_text_json_and_picture(pytester):
    pytester.makepyfile(test_pairs=PAIRS)
    result = pytester.runpytest("--parity-report=r.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*[[]parity[]] small_keras_epsilon: values are not sufficiently close*",
        "*[[]parity[]] where it goes wrong:",
        "*settings audit: 1 difference",
        "*torch 1 <-> flax bn: epsilon: torch 1e-05, flax 0.001*",
        # its inputs agree within rounding (bit for bit where both convolutions sum alike)
        "*first divergent module: torch 1 <-> flax bn (inputs max abs *;*",
        "trace picture written to *r.test_pairs.py_test_pair_cpu-float32-small_keras_epsilon_."
        "small_keras_epsilon.png",
    ])
    found = _records(pytester)
    assert "diagnosis" not in found["small_right"]  # on-failure: nothing on the passing path
    diagnosis = found["small_keras_epsilon"]["diagnosis"]
    assert diagnosis["culprit"]["torch"] == "1" and diagnosis["weights"] == []
    assert [f["what"] for f in diagnosis["settings"]] == ["epsilon"]
    assert [m["torch"] for m in diagnosis["modules"]] == ["", "0", "1", "4"]
    pictures = list(pytester.path.glob("r.*.png"))
    assert len(pictures) == 1 and pictures[0].read_bytes()[:4] == b"\x89PNG"


@needs_frameworks
def test_trace_off_keeps_the_plain_failure(pytester):
    pytester.makepyfile(test_pairs=PAIRS)
    result = pytester.runpytest("--parity-report=r.json", "--parity-trace=off")
    result.assert_outcomes(passed=1, failed=1)
    assert "where it goes wrong" not in result.stdout.str()
    assert all("diagnosis" not in record for record in _records(pytester).values())
    # The report's own picture, and no trace picture.
    assert [path.name for path in pytester.path.glob("*.png")] == ["r.png"]


@needs_frameworks
def test_trace_always_diagnoses_passing_comparisons_too(pytester):
    pytester.makeini("[pytest]\nparity_trace = always\n")
    pytester.makepyfile(test_pairs=PAIRS)
    result = pytester.runpytest("--parity-report=r.json", "-k", "small_right")
    result.assert_outcomes(passed=1)
    diagnosis = _records(pytester)["small_right"]["diagnosis"]
    assert diagnosis["culprit"] is None and not diagnosis["settings"] + diagnosis["weights"]


LAYER_BUGS = """
import flax.linen as nn
import torch
from pytest_parity import parity_test
from pytest_parity.strategies import image_batches, sequence_batches


@parity_test(torch=lambda: torch.nn.GroupNorm(8, 32), flax=lambda: nn.GroupNorm(num_groups=4),
             inputs=image_batches(channels=32, max_size=8), max_examples=5)
def test_group_norm_with_the_wrong_groups():
    pass


@parity_test(torch=lambda: torch.nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect"),
             flax=lambda: nn.Conv(8, (3, 3), padding=1), max_examples=5)
def test_conv_with_reflected_borders_ported_with_zeros():
    pass


@parity_test(torch=lambda: torch.nn.LayerNorm(64), flax=lambda: nn.LayerNorm(),
             inputs=sequence_batches(features=64, min_value=-0.05, max_value=0.05),
             max_examples=5)
def test_layer_norm_with_flax_default_epsilon():
    pass
"""


@needs_frameworks
def test_a_failing_parity_test_names_the_setting(pytester):
    pytester.makepyfile(test_layer_bugs=LAYER_BUGS)  # a basename no other test file has
    result = pytester.runpytest("--parity-report=r.json")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines([
        "*[[]parity[]] where it goes wrong:",
        "*torch (root) <-> flax (root): groups: torch 8, flax 4*",
        "*first divergent module: torch (root) <-> flax (root)*",
        "*Failing test case: examples(*",  # hypothesis' shrunk example stays
    ])
    result.stdout.fnmatch_lines(["*torch (root) <-> flax (root): padding_mode: torch 'reflect', "
                                 "flax 'zeros'*"])
    result.stdout.fnmatch_lines(["*torch (root) <-> flax (root): epsilon: torch 1e-05, "
                                 "flax 1e-06*"])
    records = json.loads((pytester.path / "r.json").read_text())["records"]
    assert len(records) == 3 and all(not r["passed"] and r["diagnosis"]["culprit"]["torch"] == ""
                                     for r in records)
