"""What the main job runs (`--zoo=flagship`, nox -s parity) and what only the whole suite
runs (`--zoo=all`, the default): the selection this repository's tests/conftest.py makes."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _collected(*options):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly",
         "tests/parity", "tests/zoo", "-m", "parity", "--parity-dtype=float32,bfloat16",
         *options], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [line for line in result.stdout.splitlines() if "::" in line]


@pytest.fixture(scope="module")
def flagship():
    pytest.importorskip("torch")
    pytest.importorskip("flax")
    return _collected("--zoo=flagship")


@pytest.fixture(scope="module")
def everything():
    return _collected()


def test_the_main_job_covers_the_flagships_in_both_dtypes_the_catalogue_and_the_mutations(
        flagship):
    for name in ("resnet50", "vit_b_16"):
        for dtype in ("float32", "bfloat16"):
            assert any(f"test_torch_and_flax_logits_agree[cpu-{dtype}-{name}]" in test
                       for test in flagship), (name, dtype)
    assert any("test_minilm.py" in test and "bfloat16" in test for test in flagship)
    assert sum("test_layer_catalogue.py" in test for test in flagship) >= 50
    assert sum("test_mutations_detected.py" in test for test in flagship) == 3


def test_the_main_job_leaves_the_rest_of_the_zoo_to_the_whole_suite(flagship, everything):
    others = ("resnet18", "resnet34", "resnet101", "resnet152", "vit_ti_16", "vit_b_32",
              "vit_l_16", "_nnx", "test_training", "test_layer_catalogue_nnx",
              "test_gradient_catalogue", "test_port_bugs_localized")
    assert not [test for test in flagship if any(other in test for other in others)]
    for other in others:
        assert any(other in test for test in everything), other
    assert set(flagship) < set(everything)
