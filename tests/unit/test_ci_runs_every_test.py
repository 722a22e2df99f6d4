"""CI runs README's test command and the slow cases that command leaves out: every test runs in
CI, though `nox -s tests` alone stays within minutes."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _commands(text: str) -> list[str]:
    return [command.strip() for command in re.split(r"&&|\n", text) if "nox -s" in command]


def test_ci_runs_the_readmes_test_command_then_the_slow_cases():
    readme = (ROOT / "README.md").read_text()
    (readme_tests,) = [line.split("#")[0].split("&&")[-1].strip()
                       for line in readme.splitlines() if line.endswith("(CI runs it)")]
    ci = _commands((ROOT / ".ci" / "run").read_text())
    assert readme_tests == "nox -s tests"
    assert readme_tests in ci
    assert "nox -s tests -- -m slow" in ci, ci  # a later -m overrides the session's "not slow"


def test_the_tests_session_leaves_out_the_slow_cases_only():
    noxfile = (ROOT / "noxfile.py").read_text()
    assert 'NOT_SLOW = ("-m", "not slow")' in noxfile
    assert re.search(r"\*NOT_SLOW,\s*\*session\.posargs", noxfile)  # posargs' -m comes last
