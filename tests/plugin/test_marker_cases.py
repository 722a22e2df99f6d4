"""The parity marker and the options expand into cases: ids, intersections, skip reasons,
tolerance layers."""

import json

import pytest

from pytest_parity import devices
from tests.support.frameworks import needs_frameworks

CASES = """
import numpy as np
import pytest
from pytest_parity import assert_close

def test_both(parity_device, parity_dtype):
    pass

@pytest.mark.parity(dtypes=["float32", "bfloat16"])
def test_marked_dtypes(parity_dtype):
    pass

@pytest.mark.parity(devices="gpu")
def test_gpu_only(parity_device):
    pass

@pytest.mark.parity(dtypes=["float16"])
def test_float16_only(parity_dtype):
    pass
"""


def _ids(result, outcome):
    reports = dict(zip(("passed", "skipped", "failed"), result.listoutcomes(), strict=True))
    return [report.nodeid.split("::")[1] for report in reports[outcome]]


@needs_frameworks
def test_cases_are_the_intersection_of_marker_and_command_line(pytester):
    pytester.makepyfile(CASES)
    result = pytester.inline_run("--parity-dtype=bfloat16,float32")
    assert _ids(result, "passed") == [
        "test_both[cpu-bfloat16]", "test_both[cpu-float32]",
        "test_marked_dtypes[bfloat16]", "test_marked_dtypes[float32]"]
    assert _ids(result, "skipped") == ["test_gpu_only[none]", "test_float16_only[none]"]


def test_an_empty_intersection_is_skipped_with_the_reason(pytester):
    pytester.makepyfile(CASES)
    output = "\n".join(pytester.runpytest("-rs", "-k", "only").outlines)
    assert ":12: the parity marker allows devices ['gpu']; this run selects ['cpu'] " \
           "(--parity-device)" in output
    assert ":16: the parity marker allows dtypes ['float16']; this run selects ['float32'] " \
           "(--parity-dtype)" in output


def test_missing_framework_skips_with_the_install_hint(pytester, monkeypatch):
    monkeypatch.setattr(devices, "missing_frameworks",
                        lambda: ["jax is not installed (pip install 'pytest-parity[jax]')"])
    pytester.makepyfile(CASES)
    result = pytester.runpytest("-rs", "-k", "test_both")
    assert "SKIPPED [1] test_missing_framework_skips_with_the_install_hint.py:5: jax is not " \
           "installed (pip install 'pytest-parity[jax]')" in result.outlines


@needs_frameworks
def test_dtype_unsupported_on_the_device_skips_with_the_reason(pytester, monkeypatch):
    monkeypatch.setattr(devices, "gpu_problems", lambda: [])
    monkeypatch.setattr(devices, "dtype_problem", lambda device, dtype: (
        "torch: bfloat16 is not supported on Tesla V100 (compute capability 7.0 < 8.0)"
        if (device, dtype) == ("gpu", "bfloat16") else None))
    pytester.makepyfile("def test_case(parity_device, parity_dtype):\n    pass\n")
    result = pytester.runpytest("-rs", "-v", "--parity-device=all",
                                "--parity-dtype=float32,bfloat16", "--co")
    result.stdout.fnmatch_lines(["*test_case[[]cpu-float32[]]*", "*test_case[[]cpu-bfloat16[]]*",
                                 "*test_case[[]gpu-float32[]]*", "*test_case[[]gpu-bfloat16[]]*"])
    result = pytester.runpytest("-rs", "--parity-device=all", "--parity-dtype=bfloat16",
                                "-k", "cpu or gpu")
    result.stdout.fnmatch_lines([
        "SKIPPED [[]1[]] *: torch: bfloat16 is not supported on Tesla V100 (compute "
        "capability 7.0 < 8.0)", "*1 passed, 1 skipped*"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ('parity(devices=["tpu"])', "parity marker: devices=['tpu']; each must be one of cpu, "
         "gpu, e.g. devices=['cpu']"),
        ('parity(dtypes="fp8")', "parity marker: dtypes='fp8'; each must be one of float32, "
         "bfloat16, float16, float64, e.g. dtypes=['float32']"),
        ("parity(rtol=-1)", "parity marker: rtol=-1; expected a finite number >= 0 or {dtype: "
         "number}, e.g. rtol=1e-5"),
        ('parity("gpu")', "parity marker takes only keyword arguments devices, dtypes, rtol, "
         "atol, verdict; got ['gpu']"),
        ("parity(device='gpu')", "parity marker takes only keyword arguments devices, dtypes, "
         "rtol, atol, verdict; got ['device']"),
        ("parity(dtypes=5)", "parity marker: dtypes=5; each must be one of float32, bfloat16, "
         "float16, float64, e.g. dtypes=['float32'] (a list)"),
        ("parity(devices=object())", "parity marker: devices=<object object at "),
        # read at collection and again when the test runs: a generator would be empty then
        ("parity(dtypes=(d for d in ['float32']))", "parity marker: dtypes=<generator object "),
        ("parity(rtol=10**400)", "parity marker: rtol=1000000000"),
        ("parity(rtol=float('inf'))", "parity marker: rtol=inf; expected a finite number >= 0"),
        ("parity(rtol=float('nan'))", "parity marker: rtol=nan; expected a finite number >= 0"),
        ("parity(rtol=True)", "parity marker: rtol=True; expected a finite number >= 0"),
        ("parity(rtol={'float33': 1e-3})", "parity marker: rtol={'float33': 0.001}; 'float33' is "
         "not a dtype: each key must be one of float32, bfloat16, float16, float64"),
        ("parity(atol={'float32': 'x'})", "parity marker: atol={'float32': 'x'}; "
         "atol['float32'] must be a finite number >= 0, e.g. atol={'float32': 1e-5}"),
        ("parity(verdict='loose')", "parity marker: verdict='loose'; expected one of auto, "
         "budget, fixed or {dtype: one of them}, e.g. verdict='fixed'"),
        ("parity(verdict={'float33': 'fixed'})", "parity marker: verdict={'float33': 'fixed'}; "
         "expected {dtype: one of auto, budget, fixed}, e.g. verdict={'bfloat16': 'fixed'}"),
    ],
    ids=["device", "dtype", "tolerance", "positional", "misspelt", "dtypes-int", "devices-object",
         "dtypes-generator", "rtol-too-large", "rtol-inf", "rtol-nan", "rtol-bool",
         "rtol-unknown-dtype", "atol-string", "verdict-unknown", "verdict-unknown-dtype"],
)
def test_a_bad_marker_is_an_error_naming_the_test(pytester, marker, message):
    pytester.makepyfile(f"import pytest\n\n@pytest.mark.{marker}\n"
                        "def test_case(parity_dtype):\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error, before any test
    # The errors section, without pytest's short summary (which repeats the first line, in
    # full under CI=true, where pytest does not shorten it to the terminal's width).
    output = "\n".join(result.outlines).partition("short test summary info")[0]
    assert f"test_a_bad_marker_is_an_error_naming_the_test.py::test_case: {message}" in output
    assert output.count(message) == 1  # once, not again as the cause of pytest's own error
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*During handling*")


@needs_frameworks
def test_tolerance_layers_marker_over_pair_command_line_over_all(pytester):
    pytester.makepyfile("""
        import numpy as np
        import pytest
        from pytest_parity import assert_close

        ACTUAL, EXPECTED = np.full(3, 1.3, np.float32), np.ones(3, np.float32)

        def test_pair(parity_device):
            assert_close(ACTUAL, EXPECTED, atol=0.5)

        @pytest.mark.parity(atol=0.4)
        def test_marker(parity_device):
            assert_close(ACTUAL, EXPECTED, atol=0.5)

        @pytest.mark.parity(atol={"float32": 0.35, "bfloat16": 0.1})
        def test_marker_per_dtype(parity_device):
            assert_close(ACTUAL, EXPECTED)
    """)
    pytester.runpytest("--parity-report=r.json").assert_outcomes(passed=3)
    records = json.loads((pytester.path / "r.json").read_text())["records"]
    assert [(r["test"].split("::")[1], r["atol"], r["tolerance_from"]) for r in records] == [
        ("test_marker[cpu]", 0.4, "marker"), ("test_marker_per_dtype[cpu]", 0.35, "marker"),
        ("test_pair[cpu]", 0.5, "pair")]
    result = pytester.runpytest("--parity-atol=0.2", "--parity-report=r.json")
    result.assert_outcomes(failed=3)
    records = json.loads((pytester.path / "r.json").read_text())["records"]
    assert {(r["atol"], r["tolerance_from"]) for r in records} == {(0.2, "command line")}
