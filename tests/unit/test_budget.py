"""The budget verdict (pytest_parity.compare.budget): what it allows, what it refuses, when it
applies, and how a run, a marker or a caller chooses fixed tolerances instead."""

import json

import ml_dtypes
import numpy as np
import pytest

from pytest_parity.compare import case_tolerances, compare
from pytest_parity.compare.budget import MAX_FACTOR, RMS_FACTOR, RMS_MIN_ELEMENTS

BF16 = ml_dtypes.bfloat16


def _rounded(values: np.ndarray) -> np.ndarray:
    return values.astype(BF16)


def _case(n: int = 4096, flax_noise: float = 0.0, seed: int = 0):
    """Torch's bfloat16 output is its float32 output rounded once (its drift: one rounding);
    Flax's is its own float32 output, `flax_noise` (relative) away, rounded once.
    Returns (flax_low, torch_low), (flax_reference, torch_reference)."""
    rng = np.random.default_rng(seed)
    torch_reference = rng.uniform(1.0, 2.0, n).astype(np.float32)
    flax_reference = torch_reference.copy()
    drifted = flax_reference * (1 + flax_noise * rng.standard_normal(n)).astype(np.float32)
    return (_rounded(drifted), _rounded(torch_reference)), (flax_reference, torch_reference)


def test_a_port_that_rounds_as_torch_does_passes_by_its_budget():
    (flax_low, torch_low), reference = _case(flax_noise=1e-3)
    leaf = compare(flax_low, torch_low, reference=reference).leaves[0]
    assert leaf.passed and leaf.tolerance_from == "budget"
    assert leaf.budget is not None and leaf.budget.reference_dtype == "float32"
    assert leaf.atol == MAX_FACTOR * leaf.budget.torch.max
    assert 0 < leaf.budget.rms_margin < 1


def test_a_port_that_rounds_far_more_fails_on_its_rms_with_every_element_in_bound():
    (flax_low, torch_low), reference = _case(flax_noise=6e-3)
    comparison = compare(flax_low, torch_low, reference=reference)
    leaf = comparison.leaves[0]
    assert leaf.n_failing == 0  # no element beyond 8x torch's largest drift plus a step
    assert leaf.budget is not None and leaf.budget.rms_margin > 1
    assert not leaf.passed and leaf.margin == leaf.budget.rms_margin
    record = comparison.to_record()
    assert not record["passed"] and record["budget"]["rms_factor"] == RMS_FACTOR
    assert record["budget"]["elements"] == 4096 and record["tolerance_from"] == "budget"


def test_the_failure_report_says_what_the_budget_is_made_of():
    (flax_low, torch_low), reference = _case(flax_noise=6e-3)
    with pytest.raises(AssertionError) as failure:
        from pytest_parity.compare import assert_close

        assert_close(flax_low, torch_low, reference=reference, name="logits")
    message = str(failure.value)
    assert "(from budget)" in message
    assert "budget (float32 reference): cross rms " in message
    assert "allowed 3 x torch's drift rms " in message
    assert "Flax drifts " in message and "it rounds where torch does not" in message


def test_one_element_far_off_fails_the_element_bound():
    (flax_low, torch_low), reference = _case(flax_noise=1e-3)
    flax_low = flax_low.copy()
    flax_low[7] = BF16(float(flax_low[7]) + 0.0625)  # > 8 x 0.0039 + a step
    leaf = compare(flax_low, torch_low, reference=reference).leaves[0]
    assert leaf.n_failing == 1 and leaf.worst[0].index == (7,)
    assert leaf.budget is not None and leaf.budget.rms_margin < 1  # the rms hardly moves


def test_too_few_elements_are_held_to_the_element_bound_alone():
    (flax_low, torch_low), reference = _case(n=RMS_MIN_ELEMENTS - 1, flax_noise=6e-3)
    leaf = compare(flax_low, torch_low, reference=reference).leaves[0]
    assert leaf.budget is not None and not leaf.budget.rms_judged
    assert leaf.passed == (leaf.n_failing == 0)
    (flax_low, torch_low), reference = _case(n=RMS_MIN_ELEMENTS, flax_noise=6e-3)
    assert not compare(flax_low, torch_low, reference=reference).passed


def test_the_budget_counts_only_what_the_mask_keeps():
    (flax_low, torch_low), reference = _case(flax_noise=1e-3)
    flax_low = flax_low.copy()
    flax_low[:100] = BF16(100.0)  # garbage in the padding
    keep = np.ones(4096, bool)
    keep[:100] = False
    leaf = compare(flax_low, torch_low, reference=reference, mask=keep).leaves[0]
    assert leaf.passed and leaf.budget is not None and leaf.budget.n == 3996


def test_where_torch_rounds_nothing_the_fixed_table_applies():
    values = np.linspace(1, 2, 4096).astype(BF16)  # representable: torch's drift is 0
    reference = (values.astype(np.float32), values.astype(np.float32))
    leaf = compare(values, values, reference=reference).leaves[0]
    assert leaf.budget is not None and not leaf.budget.measurable
    assert leaf.tolerance_from == "default"


def test_a_fixed_verdict_and_a_callers_tolerance_replace_the_budget():
    (flax_low, torch_low), reference = _case(flax_noise=6e-3)
    with case_tolerances.applied([], "fixed"):
        leaf = compare(flax_low, torch_low, reference=reference).leaves[0]
    assert leaf.budget is None and leaf.tolerance_from == "default"
    with case_tolerances.applied([], {"bfloat16": "fixed"}):
        assert compare(flax_low, torch_low, reference=reference).leaves[0].budget is None
    leaf = compare(flax_low, torch_low, reference=reference, atol=0.1).leaves[0]
    assert leaf.tolerance_from == "pair" and leaf.passed  # the budget is reported, not used
    assert leaf.budget is not None and leaf.budget.rms_margin > 1


def test_float32_is_judged_by_a_budget_only_when_asked():
    rng = np.random.default_rng(0)
    torch_out = rng.standard_normal(1024).astype(np.float32)
    reference = (torch_out.astype(np.float64), torch_out.astype(np.float64))
    assert compare(torch_out, torch_out, reference=reference).leaves[0].budget is None
    with case_tolerances.applied([], "budget"):
        leaf = compare(torch_out, torch_out, reference=reference).leaves[0]
    assert leaf.budget is not None and leaf.budget.reference_dtype == "float64"


def test_a_float32_budget_runs_both_sides_in_float64():
    torch = pytest.importorskip("torch")
    nn = pytest.importorskip("flax.linen")
    from pytest_parity.run.decorator import check_parity
    from pytest_parity.strategies import feature_batches

    with case_tolerances.applied([], "budget"):
        result = check_parity(torch=lambda: torch.nn.Linear(64, 64), flax=nn.Dense(64),
                              inputs=feature_batches(features=64, min_batch=16, max_batch=16),
                              dtype="float32", max_examples=2)
    leaf = result.worst.worst_leaf
    assert leaf.tolerance_from == "budget" and leaf.budget.reference_dtype == "float64"
    # jax truncates float64 to float32 outside enable_x64: its drift would then be exactly 0
    assert leaf.budget.flax.rms > 0 and leaf.budget.torch.rms > 0


PLUGIN_CASE = """
import torch
import flax.linen as nn
from pytest_parity import parity_test
from pytest_parity.strategies import feature_batches

@parity_test(torch=lambda: torch.nn.Linear(64, 64), flax=nn.Dense(64), dtypes=["bfloat16"],
             inputs=feature_batches(features=64, min_batch=16, max_batch=16), max_examples=2)
def test_dense():
    pass

@parity_test(torch=lambda: torch.nn.Linear(64, 64), flax=nn.Dense(64), dtypes=["bfloat16"],
             inputs=feature_batches(features=64, min_batch=16, max_batch=16), max_examples=2,
             verdict="fixed")
def test_dense_fixed():
    pass
"""


@pytest.mark.parametrize("options, expected", [
    ((), {"test_dense": "budget", "test_dense_fixed": "default"}),
    (("--parity-verdict=fixed",), {"test_dense": "default", "test_dense_fixed": "default"}),
    (("--parity-verdict=budget",), {"test_dense": "budget", "test_dense_fixed": "budget"}),
], ids=["auto", "run-fixed", "run-budget"])
def test_the_run_and_the_marker_choose_the_verdict(pytester, options, expected):
    pytest.importorskip("torch")
    pytest.importorskip("flax")
    pytester.makepyfile(test_budget_verdicts=PLUGIN_CASE)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--parity-dtype=bfloat16",
                                           "--parity-report=report.json", *options)
    assert result.ret == 0, result.stdout.str()
    document = json.loads((pytester.path / "report.json").read_text())
    sources = {record["name"].split(":")[0]: record["tolerance_from"]
               for record in document["records"]}
    assert sources == expected
    assert document["settings"]["verdict"] == (options[0].split("=")[1] if options else "auto")
