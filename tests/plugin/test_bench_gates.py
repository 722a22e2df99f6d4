"""--parity-bench-gate fails the session, with its table, when a ratio exceeds its limit."""

import pytest

pytest.importorskip("pytest_benchmark")

BENCHMARKS = """
import time
import pytest

def sleep(seconds):
    time.sleep(seconds)

def test_baseline(benchmark):
    benchmark.pedantic(sleep, args=(0.002,), rounds=3, iterations=1)

@pytest.mark.parity_gate(baseline="test_baseline", limit=3.0)
def test_measured(benchmark):
    benchmark.pedantic(sleep, args=(0.002 * FACTOR,), rounds=3, iterations=1)
"""


@pytest.fixture(autouse=True)
def _inner_runs_outside_xdist(monkeypatch):
    """Under xdist the inner runs inherit PYTEST_XDIST_WORKER, and pytest-benchmark then
    disables every benchmark ("xdist plugin is active"): no gate would be measured."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)


def _run(pytester, factor, *options):
    pytester.makepyfile(test_timed=BENCHMARKS.replace("FACTOR", str(factor)))
    return pytester.runpytest_subprocess("--parity-bench-gate", "-p", "no:randomly", *options)


def test_a_ratio_within_its_limit_passes(pytester):
    result = _run(pytester, 1.5)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "*= parity benchmark gates: 0 of 1 measured exceeded =*",
        "gate*ratio*limit*measured*baseline*verdict",
        "test_measured / test_baseline *1.* 3 *ms *ms *PASS",
    ])


def test_an_artificial_slowdown_fails_the_session_with_the_table(pytester):
    result = _run(pytester, 8)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2)  # every benchmark ran; the gate fails the session
    result.stdout.fnmatch_lines([
        "*= parity benchmark gates: 1 of 1 measured exceeded =*",
        "test_measured / test_baseline *[4-9].* 3 *ms *ms *FAIL",
    ])


def test_gates_declared_in_pyproject_and_unmeasured_ones(pytester):
    pytester.makepyprojecttoml("""
        [[tool.parity.gates]]
        name = "measured against baseline"
        measure = "test_measured"
        baseline = "test_baseline"
        limit = 1.2
        stat = "median"

        [[tool.parity.gates]]
        name = "a benchmark this run does not select"
        measure = "test_elsewhere"
        baseline = "test_baseline"
        limit = 2
    """)
    result = _run(pytester, 2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*= parity benchmark gates: 1 of 2 measured exceeded =*"])
    result.stdout.fnmatch_lines(["measured against baseline *1.2 *FAIL"])
    result.stdout.fnmatch_lines(["a benchmark this run does not select *- *2 *- *ms *not measured"])


def test_no_gate_measured_fails(pytester):
    result = _run(pytester, 1, "--benchmark-disable")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*= parity benchmark gates: none measured (benchmarks not "
                                 "selected, or not timed: --benchmark-disable) =*"])


def test_a_gate_with_an_unknown_statistic_is_a_usage_error(pytester):
    pytester.makepyprojecttoml("""
        [[tool.parity.gates]]
        measure = "test_measured"
        baseline = "test_baseline"
        limit = 1.2
        stat = "p99"
    """)
    result = _run(pytester, 1)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*[[]tool.parity[]] gates[[]0[]]: stat = 'p99'; one of min, "
                                 "median, mean, e.g. stat = \"median\""])
