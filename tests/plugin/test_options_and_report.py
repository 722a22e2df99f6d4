"""The plugin as a user meets it, run through pytester."""

import json
from pathlib import Path

import pytest

from pytest_parity import devices
from tests.support.frameworks import needs_frameworks

CASES = """
import numpy as np
import pytest
from pytest_parity import assert_close

def test_device_case(parity_device):
    assert_close(np.ones(3), np.ones(3) + 1e-9, name="ones")

@pytest.mark.parity
def test_marked_two_comparisons():
    assert_close(np.zeros(2), np.zeros(2), name="first")
    assert_close(np.zeros(2), np.zeros(2), name="second")

def test_plain_is_not_reported():
    assert_close(np.zeros(2), np.zeros(2))
"""


def test_help_lists_the_parity_group_as_pinned(pytester, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = pytester.runpytest_subprocess("--help")
    assert result.ret == 0
    text = "\n".join(result.outlines)
    block = text[text.index("numerical parity between torch and jax/flax:"):]
    pinned = (Path(__file__).parent / "pinned" / "help.txt").read_text()
    assert block[:len(pinned)] == pinned, "the options' help changed: update pinned/help.txt"
    result.stdout.fnmatch_lines([
        "  parity_device (string):", "*default for --parity-device",
        "  parity_dtype (string):", "*default for --parity-dtype",
        "  parity_rtol (string): default for --parity-rtol",
        "  parity_atol (string): default for --parity-atol",
        "  parity_seed (string): default for --parity-seed",
        "  parity_numerics (string):", "*default for --parity-numerics",
        "  parity_trace (string):", "*default for --parity-trace",
        "  parity_jax_cache (string):", "*default for --parity-jax-cache",
        "  parity_golden_dir (string):",
    ])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--parity-dtype=float32,int8", "argument --parity-dtype: Could not parse value: "
         "'float32,int8'. Expected a comma-separated list of float32, bfloat16, float16, "
         "float64, e.g. '--parity-dtype=float32,bfloat16'."),
        ("--parity-rtol=-1", "argument --parity-rtol: Could not parse value: '-1'. Expected a "
         "finite number >= 0, e.g. '--parity-atol=1e-5'."),
        ("--parity-atol=tight", "argument --parity-atol: Could not parse value: 'tight'. "
         "Expected a finite number >= 0, e.g. '--parity-atol=1e-5'."),
        ("--parity-seed=1.5", "argument --parity-seed: Could not parse value: '1.5'. Expected "
         "an integer from 0 to 2**32 - 1, e.g. '--parity-seed=0'."),
        ("--parity-numerics=fast", "argument --parity-numerics: Could not parse value: 'fast'. "
         "Expected one of pinned, default, e.g. '--parity-numerics=pinned'."),
    ],
    ids=["dtype", "rtol", "atol", "seed", "numerics"],
)
def test_bad_values_fail_before_any_test_runs_with_an_example(pytester, option, message):
    pytester.makepyfile(CASES)
    result = pytester.runpytest(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in "\n".join(result.errlines)
    result.stdout.no_fnmatch_line("*passed*")


def test_bad_ini_value_is_a_usage_error_naming_the_ini_option(pytester):
    pytester.makepyfile(CASES)
    pytester.makeini("[pytest]\nparity_dtype = float32,fp8\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ini option parity_dtype: Could not parse value: 'float32,fp8'" in \
        "\n".join(result.errlines)


@needs_frameworks
def test_ini_sets_the_defaults_and_the_command_line_wins(pytester):
    pytester.makepyfile(CASES)
    pytester.makeini("[pytest]\nparity_dtype = bfloat16,float32\nparity_seed = 7\n")
    result = pytester.runpytest("-v", "--parity-report=r.json")
    result.stdout.fnmatch_lines(["*test_device_case[[]cpu[]] PASSED*"])
    assert json.loads((pytester.path / "r.json").read_text())["settings"]["seed"] == 7
    pytester.makepyfile(test_dtypes="def test_dtype(parity_dtype): pass")
    result = pytester.runpytest("-v", "test_dtypes.py")
    result.stdout.fnmatch_lines(["*test_dtype[[]bfloat16[]] PASSED*",
                                 "*test_dtype[[]float32[]] PASSED*"])
    result = pytester.runpytest("-v", "test_dtypes.py", "--parity-dtype=float16")
    result.stdout.fnmatch_lines(["*test_dtype[[]float16[]] PASSED*", "*1 passed*"])


def test_old_ini_names_still_read_and_warn_naming_the_new_one(pytester):
    pytester.makepyfile(test_dtypes="def test_dtype(parity_dtype): pass")
    pytester.makeini("[pytest]\nparity_dtypes = float16\nparity_devices = cpu\n")
    result = pytester.runpytest("-v", "--strict-config", "-p", "no:randomly")
    result.stdout.fnmatch_lines([
        "*test_dtype[[]float16[]]*", "*1 passed*",
    ])
    result.stdout.fnmatch_lines([
        "*ParityDeprecationWarning: [[]parity[]] the ini option parity_dtypes is deprecated "
        "and will be removed in the next release; use parity_dtype"])
    result.stdout.fnmatch_lines(["*the ini option parity_devices is deprecated*; use "
                                 "parity_device"])
    strict = pytester.runpytest("-W", "error::DeprecationWarning")
    assert strict.ret != pytest.ExitCode.OK


def test_the_new_ini_name_wins_over_the_old(pytester):
    pytester.makepyfile(test_dtypes="def test_dtype(parity_dtype): pass")
    pytester.makeini("[pytest]\nparity_dtypes = float16\nparity_dtype = float64\n")
    result = pytester.runpytest("-v", "--strict-config")
    result.stdout.fnmatch_lines(["*test_dtype[[]float64[]]*", "*1 passed*"])
    result.stdout.fnmatch_lines(["*the ini option parity_dtypes is deprecated*; use "
                                 "parity_dtype (set too; it wins)"])


def test_bad_device_fails_before_any_test_runs(pytester):
    pytester.makepyfile(CASES)
    result = pytester.runpytest_subprocess("--parity-device=cuda")
    result.stderr.fnmatch_lines([
        "*argument --parity-device: Could not parse value: 'cuda'. Expected one of "
        "cpu, gpu, all, auto, e.g. '--parity-device=cpu'.",
    ])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.no_fnmatch_line("*passed*")


@pytest.mark.skipif(not devices.gpu_problems(), reason="a GPU is present for torch and jax")
@needs_frameworks
def test_gpu_without_a_gpu_is_a_usage_error_naming_the_framework(pytester):
    pytester.makepyfile(CASES)
    result = pytester.runpytest_subprocess("--parity-device=gpu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: --parity-device=gpu cannot run here: *sees no GPU*Use --parity-device=cpu*"])


@pytest.mark.parametrize(
    ("problems", "expected"),
    [(["torch 9 sees no GPU"], "torch 9 sees no GPU"),
     (["jax 9 sees no GPU"], "jax 9 sees no GPU")],
    ids=["torch-lacks", "jax-lacks"],
)
def test_gpu_error_names_whichever_framework_lacks_one(pytester, monkeypatch, problems, expected):
    monkeypatch.setattr(devices, "gpu_problems", lambda: problems)
    pytester.makepyfile(CASES)
    result = pytester.runpytest("--parity-device=gpu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected in "\n".join(result.errlines)


@needs_frameworks
def test_all_runs_cpu_and_skips_gpu_with_the_reason(pytester, monkeypatch):
    monkeypatch.setattr(devices, "gpu_problems", lambda: ["torch 9 sees no GPU"])
    pytester.makepyfile(CASES)
    result = pytester.inline_run("--parity-device=all")
    passed, skipped, failed = result.listoutcomes()
    assert [report.nodeid.split("::")[1] for report in skipped] == ["test_device_case[gpu]"]
    assert skipped[0].longrepr[2] == "Skipped: torch 9 sees no GPU"
    assert "test_device_case[cpu]" in {report.nodeid.split("::")[1] for report in passed}
    assert not failed


@needs_frameworks
def test_auto_picks_gpu_only_when_both_see_one(pytester, monkeypatch):
    pytester.makepyfile(CASES)
    monkeypatch.setattr(devices, "gpu_problems", lambda: ["jax 9 sees no GPU"])
    pytester.runpytest("--parity-device=auto", "-v").stdout.fnmatch_lines(
        ["*test_device_case[[]cpu[]] PASSED*"])
    monkeypatch.setattr(devices, "gpu_problems", lambda: [])
    pytester.runpytest("--parity-device=auto", "-v", "--co").stdout.fnmatch_lines(
        ["*test_device_case[[]gpu[]]*"])


@needs_frameworks
def test_summary_and_json_hold_every_parity_comparison(pytester):
    pytester.makepyfile(CASES)
    result = pytester.runpytest_subprocess("--parity-report=out/report.json")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([
        "*= parity report: 3 comparisons =*",
        "*dtype*max abs*max rel*rtol/atol*margin*test::comparison*verdict",
    ])
    result.stdout.fnmatch_lines(["3 comparisons, 0 failed, worst margin *",
                                 "parity report written to out/report.json",
                                 "parity picture written to out/report.png"])
    assert (pytester.path / "out" / "report.png").read_bytes()[:4] == b"\x89PNG"
    table = result.outlines[next(i for i, line in enumerate(result.outlines)
                                 if "parity report: 3 comparisons" in line):]
    assert all(len(line) <= 120 for line in table[:table.index(
        "parity report written to out/report.json")])
    records = json.loads((pytester.path / "out" / "report.json").read_text())["records"]
    assert [(r["test"].split("::")[1], r["name"], r["device"]) for r in records] == [
        ("test_device_case[cpu]", "ones", "cpu"),
        ("test_marked_two_comparisons", "first", None),
        ("test_marked_two_comparisons", "second", None),
    ]


@needs_frameworks
def test_xdist_reports_the_same_records_as_a_plain_run(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(CASES)
    pytester.runpytest_subprocess("--parity-report=plain.json").assert_outcomes(passed=3)
    pytester.runpytest_subprocess("-n", "2", "--parity-report=xdist.json").assert_outcomes(
        passed=3)
    plain, xdist = (json.loads((pytester.path / name).read_text())["records"]
                    for name in ("plain.json", "xdist.json"))
    assert plain == xdist and len(plain) == 3


def test_failing_parity_case_is_reported_as_fail(pytester):
    pytester.makepyfile("""
        import numpy as np
        import pytest
        from pytest_parity import assert_close

        @pytest.mark.parity
        def test_off():
            assert_close(np.ones(4), np.zeros(4), name="logits")

        @pytest.mark.parity
        def test_zeros_within_atol():
            assert_close(np.array([0.0, 1e-7, 1.0]), np.array([0.0, 0.0, 1.0]), name="probs")
    """)
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "E *AssertionError: [[]parity[]] logits: values are not sufficiently close",
        "*= parity report: 2 comparisons =*",
        "*dtype*max abs*max rel*rtol/atol*margin*test::comparison*verdict",
        "FAILED test_failing_parity_case_is_reported_as_fail.py (1)",  # failures first
        "*test_off::logits*FAIL",
        "test_failing_parity_case_is_reported_as_fail.py (1)",
        "*float64*1.00e-7*0*test_zeros_within_atol::probs*PASS",  # expected 0: no rel error
        "2 comparisons, 1 failed, worst margin * (test_off::logits)",
    ])
    table = result.outlines[next(i for i, line in enumerate(result.outlines)
                                 if "parity report: 2 comparisons" in line):]
    assert not any(" inf " in line for line in table[:table.index(
        "margin = |a - e| / (atol + rtol*|e|), <= 1 passes; max rel only where e != 0")])


def test_a_wrong_tree_reports_every_failing_leaf_worst_first(pytester):
    pytester.makepyfile("""
        import numpy as np
        import pytest
        from pytest_parity import assert_close

        @pytest.mark.parity
        def test_tree():
            expected = {"a": np.zeros(4), "b": np.zeros(4), "c": np.zeros(4), "d": np.zeros(4)}
            actual = {"a": np.full(4, 1e-3), "b": np.zeros(4), "c": np.full(4, 1.0),
                      "d": np.full(4, 1e-5)}
            assert_close(actual, expected, rtol=0, atol=1e-6, name="outputs")
    """)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    headers = [line.removeprefix("E   ").strip() for line in result.outlines
               if "[parity] outputs" in line and line.startswith("E")]
    assert headers == [
        "AssertionError: [parity] outputs: 3 of 4 leaves not sufficiently close (worst first)",
        "[parity] outputs/c: values are not sufficiently close",
        "[parity] outputs/a: values are not sufficiently close",
        "[parity] outputs/d: values are not sufficiently close",
    ]
    result.stdout.fnmatch_lines(["*test_tree::outputs*FAIL"])


def test_trees_that_cannot_be_compared_are_fail_records_too(pytester):
    pytester.makepyfile(test_unmatched="""
        import numpy as np
        import pytest
        from pytest_parity import assert_close

        @pytest.mark.parity
        def test_shapes():
            assert_close(np.zeros((2, 3)), np.zeros((3, 2)), name="logits")

        @pytest.mark.parity
        def test_leaves():
            assert_close({"a": np.zeros(2)}, {"b": np.zeros(2)}, name="outputs")
    """)
    result = pytester.runpytest_subprocess("--parity-report=report.json")
    result.assert_outcomes(failed=2)
    for row in ("*- *- *- *- *- *test_leaves::outputs *FAIL",
                "*- *- *- *- *- *test_shapes::logits *FAIL"):
        result.stdout.fnmatch_lines([row])
    records = json.loads((pytester.path / "report.json").read_text())["records"]
    assert [(record["name"], record["passed"], record["problem"]) for record in records] == [
        ("outputs", False, "outputs: structures differ (2 problems); outputs/b: missing in "
                           "actual (expected has it); outputs/a: unexpected in actual "
                           "(expected has no such leaf)"),
        ("logits", False, "logits: structures differ (1 problems); logits: shape (2, 3) "
                          "(float64) does not match expected shape (3, 2) (float64)")]


def test_jax_compilation_cache_defaults_to_pytests_cache_and_turns_off(pytester, monkeypatch):
    pytest.importorskip("jax")
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("JAX_ENABLE_COMPILATION_CACHE", raising=False)
    pytester.makepyfile(test_cache="""
        import jax
        import pytest

        @pytest.mark.parity
        def test_where():
            print("CACHE", jax.config.jax_compilation_cache_dir,
                  jax.config.jax_enable_compilation_cache)
    """)
    result = pytester.runpytest_subprocess("-s", "--parity-report=r.json")
    result.stdout.fnmatch_lines([f"*CACHE {pytester.path}/.pytest_cache/d/parity-xla True"])
    settings = json.loads((pytester.path / "r.json").read_text())["settings"]
    assert settings["jax_cache"] == f"{pytester.path}/.pytest_cache/d/parity-xla"
    pytester.runpytest_subprocess("-s", "--parity-jax-cache=none").stdout.fnmatch_lines(
        ["*CACHE None False"])
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(pytester.path / "users"))
    pytester.runpytest_subprocess("-s", "--parity-jax-cache=xla").stdout.fnmatch_lines(
        [f"*CACHE {pytester.path}/xla True"])  # the option chooses, over the user's directory
