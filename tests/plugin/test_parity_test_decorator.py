"""`@parity_test` as another repository uses it: wrong pairings fail with the report and a
shrunk input; cases follow the options and the marker; the test body gets the result."""

import pytest

pytest.importorskip("torch")
pytest.importorskip("flax")

HEADER = """
import flax.linen as nn
import numpy as np
import torch
from pytest_parity import parity_test
from pytest_parity.mapping import Mapping, Rule
from pytest_parity.strategies import feature_batches, image_batches
from pytest_parity.mapping import Transpose
"""

WRONG = HEADER + """
@parity_test(torch=lambda: torch.nn.Conv2d(3, 4, 3, padding=1),
             flax=lambda: nn.Conv(4, (3, 3), padding="VALID"),
             inputs=image_batches(channels=3))
def test_padding():
    pass

@parity_test(torch=torch.nn.GELU, flax=lambda x: nn.gelu(x, approximate=True),
             inputs=image_batches(channels=3, min_value=-4.0, max_value=4.0))
def test_gelu():
    pass

# A kernel transposed the wrong way: kh and kw swapped (HWIO from OIWH).
WRONG_KERNEL = Mapping("wrong", (
    Rule("kernel", "weight", "HWIO", transform=Transpose((3, 2, 1, 0))),
    Rule("bias", "bias", "O")))

@parity_test(torch=lambda: torch.nn.Conv2d(3, 4, 3, padding=1),
             flax=lambda: nn.Conv(4, (3, 3), padding=1), mapping=WRONG_KERNEL,
             inputs=image_batches(channels=3))
def test_kernel():
    pass
"""


def _failure_of(result, test):
    """The failure's text, each line without pytest's `E` prefix and indentation."""
    report = next(r for r in result.getreports("pytest_runtest_logreport")
                  if r.nodeid.endswith(f"::{test}[cpu-float32]") and r.when == "call")
    return "\n".join(line.removeprefix("E").strip() for line in report.longreprtext.splitlines())


def test_wrong_pairings_fail_with_the_report_and_a_shrunk_input(pytester):
    pytester.makepyfile(test_wrong=WRONG)
    result = pytester.inline_run("-p", "no:randomly")
    assert [r.nodeid.split("::")[1] for r in result.listoutcomes()[2]] == [
        "test_padding[cpu-float32]", "test_gelu[cpu-float32]", "test_kernel[cpu-float32]"]
    smallest = ("Batch(torch shape=(1, 3, 8, 8), flax shape=(1, 8, 8, 3), dtype=float32, "
                "seed=0,")
    padding = _failure_of(result, "test_padding")
    assert "[parity] test_padding: structures differ (1 problems)\ntest_padding: shape " \
           "(1, 4, 6, 6) (float32) does not match expected shape (1, 4, 8, 8) (float32)" in padding
    gelu = _failure_of(result, "test_gelu")
    assert "[parity] test_gelu: values are not sufficiently close" in gelu
    assert "worst elements:" in gelu and "out of tolerance rtol=1.3e-06, atol=1e-05" in gelu
    kernel = _failure_of(result, "test_kernel")
    assert "[parity] test_kernel: values are not sufficiently close" in kernel
    for failure in (padding, gelu, kernel):  # hypothesis shrank to batch 1 at the smallest size
        assert f"input: {smallest}" in failure
        assert f"Failing test case: examples(\nbatch={smallest}" in failure


def test_cases_follow_the_options_and_the_body_gets_the_result(pytester):
    pytester.makepyfile(test_good=HEADER + """
@parity_test(torch=lambda: torch.nn.Linear(6, 3), flax=lambda: nn.Dense(3),
             dtypes=["float32", "bfloat16"], max_examples=7)
def test_linear(result, parity_dtype, tmp_path):
    assert tmp_path.exists()  # other fixtures still reach the test
    assert result.examples == 7 and 1 <= result.compilations <= 4
    assert result.flax_variables["params"]["kernel"].dtype == parity_dtype
    assert str(result.worst.worst_leaf.actual_dtype) == parity_dtype
""")
    result = pytester.runpytest("-v", "-p", "no:randomly", "--parity-dtype=bfloat16,float16",
                                "--parity-device=all", "-rs")
    result.stdout.fnmatch_lines([
        "*test_linear[[]cpu-bfloat16[]] PASSED*",
        "*test_linear[[]gpu-bfloat16[]] SKIPPED*",
        "*bfloat16*test_linear::worst of 7 examples, * compilations*PASS",
    ])
    assert "-float16]" not in result.stdout.str()  # the decorator's dtypes exclude it


def test_models_that_cannot_be_paired_fail_with_the_message_not_a_traceback(pytester):
    pytester.makepyfile(test_unpaired=HEADER + """
@parity_test(torch=lambda: torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2)),
             flax=lambda: nn.Dense(2), inputs=feature_batches(features=4))
def test_two_linears_one_dense():
    pass
""")
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*[[]parity[]] automatic mapping auto:Sequential->Dense: cannot pair the two models "
        "unambiguously",
        "*linear: torch 0 and Flax (root) are next in order but differ*",
        "*unpaired torch: 0 (Linear: weight (8, 4), bias (8,))",
        "*unpaired torch: 1 (Linear: weight (2, 8), bias (2,))",
        "*resolve it by name: hints=*",
    ])
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*automap.py*")


def test_inputs_that_cannot_be_inferred_fail_with_the_fix(pytester):
    pytester.makepyfile(test_no_inputs=HEADER + """
@parity_test(torch=torch.nn.ReLU, flax=lambda x: nn.relu(x))
def test_relu():
    pass
""")
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*inputs_for: cannot tell the input shape of a torch ReLU; "
                                 "pass inputs= a strategy, e.g. inputs=image_batches(channels=3)*"])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_failing_cases_are_fail_rows_of_the_summary_and_the_json(pytester):
    """Every comparison a test makes is recorded, pass or fail (a newcomer found the two
    failing cases missing from both, the passing ones listed)."""
    import json

    pytester.makepyfile(test_recorded_failures=WRONG + """
@parity_test(torch=lambda: torch.nn.Linear(6, 3), flax=lambda: nn.Dense(3),
             inputs=feature_batches(features=6))
def test_linear_agrees():
    pass
""")
    result = pytester.runpytest("-p", "no:randomly", "--parity-report=report.json")
    result.assert_outcomes(passed=1, failed=3)
    for test, verdict in (("test_padding", "FAIL"), ("test_gelu", "FAIL"),
                          ("test_kernel", "FAIL"), ("test_linear_agrees", "PASS")):
        result.stdout.fnmatch_lines([f"*float32 *{test}::* {verdict}"])
    # No values were compared where the shapes differ: no figures, and why in the JSON.
    result.stdout.fnmatch_lines(["*float32 *- *- *- *- *test_padding::*FAIL"])
    records = json.loads((pytester.path / "report.json").read_text())["records"]
    verdicts = {record["test"].split("::")[1]: record["passed"] for record in records}
    assert verdicts == {"test_padding[cpu-float32]": False, "test_gelu[cpu-float32]": False,
                        "test_kernel[cpu-float32]": False, "test_linear_agrees[cpu-float32]": True}
    padding = next(record for record in records if "test_padding" in record["test"])
    assert padding["problem"].startswith("test_padding: structures differ (1 problems); "
                                         "test_padding: shape (1, 4, 6, 6)")


def test_a_bfloat16_failure_says_what_was_compared(pytester):
    """The `input:` line said dtype=float32 in a bfloat16 case: the batch is drawn in float32
    and given to both sides as bfloat16, and the report's figures are bfloat16's."""
    pytester.makepyfile(test_bfloat16_failure=WRONG)
    result = pytester.inline_run("-p", "no:randomly", "--parity-dtype=bfloat16", "-k", "kernel")
    report = next(r for r in result.getreports("pytest_runtest_logreport")
                  if r.nodeid.endswith("::test_kernel[cpu-bfloat16]") and r.when == "call")
    failure = report.longreprtext
    assert "dtypes bfloat16 (actual) vs bfloat16 (expected)" in failure
    assert "dtype=float32, seed=0, " in failure and ", given to both sides as bfloat16" in failure
