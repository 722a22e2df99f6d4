"""Each parity case runs with pinned numerics, recorded in the report; --parity-numerics=default
leaves the frameworks' own settings."""

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("jax")

PROBE = """
import json
import jax
import pytest
import torch

def _settings():
    return {"jax": jax.config.jax_default_matmul_precision,
            "tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "first_draw": float(torch.rand(1))}

@pytest.mark.parity
def test_probe():
    with open("inside.json", "w") as out:
        json.dump(_settings(), out)

def test_plain():
    with open("plain.json", "w") as out:
        json.dump(_settings(), out)
"""


def _probe(pytester, *options):
    pytester.makepyfile(PROBE)
    pytester.runpytest("-p", "no:randomly", "--parity-report=r.json", *options
                       ).assert_outcomes(passed=2)
    read = lambda name: json.loads((pytester.path / name).read_text())  # noqa: E731
    return read("inside.json"), read("plain.json"), read("r.json")["settings"]["numerics"]


def test_parity_cases_run_pinned_and_other_tests_do_not(pytester):
    import torch

    inside, plain, recorded = _probe(pytester, "--parity-seed=3")
    assert (inside["jax"], inside["tf32"], inside["cudnn_tf32"], inside["deterministic"]) == (
        "highest", False, False, True)
    assert (plain["jax"], plain["deterministic"]) == (None, False)
    assert plain["cudnn_tf32"] is torch.backends.cudnn.allow_tf32  # restored after the case
    assert inside["first_draw"] == float(torch.manual_seed(3) and torch.rand(1))
    assert recorded == {"mode": "pinned", "torch_seed": 3, "jax_default_matmul_precision":
                        "highest", "torch_allow_tf32": False,
                        "torch_float32_matmul_precision": "highest",
                        "torch_cudnn_deterministic": True, "torch_cudnn_benchmark": False,
                        "torch_deterministic_algorithms": "on (warn only)"}


def test_default_numerics_leave_the_frameworks_alone(pytester):
    inside, plain, recorded = _probe(pytester, "--parity-numerics=default")
    assert (inside["jax"], inside["deterministic"]) == (None, False)
    assert inside["cudnn_tf32"] == plain["cudnn_tf32"]
    assert recorded == {"mode": "default", "torch_seed": 0}


@pytest.mark.parametrize("mode", ["pinned", "default"])
def test_a_case_seeds_torch_and_leaves_the_generator_as_it_found_it(mode):
    torch = pytest.importorskip("torch")
    from pytest_parity import numerics

    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    with numerics.applied(mode, seed=0):
        inside = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(inside, torch.rand(3))  # the case ran under its seed
    torch.manual_seed(1234)
    with numerics.applied(mode, seed=0):
        torch.rand(5)
    assert torch.equal(torch.rand(3), expected)  # and what follows draws as if it had not run
