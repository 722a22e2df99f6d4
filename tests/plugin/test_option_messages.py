"""What options and markers say when they are wrong. Paths: what stands in the way is a usage
error before any test runs, and a report the disk refuses at the end is one red line and a
failing exit status, never a traceback (`--parity-report=<a directory>` was one). A marker's
mistake is said once."""

import json

import pytest

PASSING = """
import numpy as np
import pytest
from pytest_parity import assert_close

@pytest.mark.parity
def test_close():
    assert_close(np.zeros(3), np.zeros(3))
"""


@pytest.mark.parametrize(("option", "words"), [
    ("--parity-report=.", "--parity-report=.: a directory is in its place; give a file, "
                          "e.g. parity-report.json"),
    ("--parity-report=afile/report.json", "--parity-report=afile/report.json: afile is a file, "
                                          "not a directory"),
    ("--parity-jax-cache=afile", "afile: a file is in its place; give a directory"),
    ("--parity-jax-cache=afile/xla", "afile/xla: *afile is a file, not a directory"),
])
def test_a_path_in_the_way_is_a_usage_error_before_any_test(pytester, option, words):
    pytester.makepyfile(test_paths=PASSING)
    (pytester.path / "afile").write_text("")
    result = pytester.runpytest_subprocess(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: [[]parity[]] *{words}"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_a_report_refused_at_the_end_is_a_red_line_and_a_failing_status(pytester):
    pytester.makepyfile(test_paths=PASSING + """
def test_takes_the_reports_place():
    import os
    os.mkdir("report.json")  # the path was free at the start
""")
    result = pytester.runpytest_subprocess("--parity-report=report.json")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["[[]parity[]] report.json: cannot write it: a directory is in "
                                 "its place"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_a_written_report_is_still_announced(pytester):
    pytester.makepyfile(test_paths=PASSING)
    result = pytester.runpytest_subprocess("--parity-report=out/report.json", "-p",
                                           "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["parity report written to out/report.json"])
    assert len(json.loads((pytester.path / "out/report.json").read_text())["records"]) == 1


def test_a_marker_typo_is_said_once(pytester):
    """It was printed twice, with "During handling of the above exception" between."""
    pytester.makepyfile(test_typo="""
import pytest

@pytest.mark.parity(dtype=["float32"])
def test_a(parity_dtype):
    pass
""")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    # Once in the errors section; pytest's short summary repeats it (shortened to the
    # terminal's width, but in full under CI=true), so it is left out of the count.
    output = result.stdout.str().partition("short test summary info")[0]
    assert output.count("got ['dtype']") == 1
    result.stdout.fnmatch_lines(["test_typo.py::test_a: parity marker takes only keyword "
                                 "arguments devices, dtypes, rtol, atol, verdict; got ['dtype']"])
    assert "During handling" not in output
