"""The plugin must not slow down or break suites that don't use it."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Makes `import torch` / `import jax` fail as if they were not installed.
BLOCK_FRAMEWORKS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "jax", "jaxlib", "flax"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, Block())
"""


def _python(code, *args, cwd=ROOT):
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_importing_the_plugin_imports_no_framework():
    result = _python(
        "import pytest_parity.plugin, sys; "
        "heavy = sorted(m for m in ('torch', 'jax', 'flax', 'numpy') if m in sys.modules); "
        "assert not heavy, heavy")
    assert result.returncode == 0, result.stderr


def test_input_is_exported_and_declares_inputs_without_a_framework():
    result = _python(
        BLOCK_FRAMEWORKS + "import pytest_parity; from pytest_parity import Input; "
        "assert 'Input' in pytest_parity.__all__; "
        "assert Input('input_ids', (2, 6), 'int64', high=50).describe() == "
        "'input_ids (2, 6) int64, values in [0, 50)'; "
        "heavy = sorted(m for m in ('torch', 'jax', 'flax') if m in sys.modules); "
        "assert not heavy, heavy")
    assert result.returncode == 0, result.stderr


def test_help_lists_the_parity_group_without_torch_or_jax(tmp_path):
    result = _python(BLOCK_FRAMEWORKS + "import pytest; raise SystemExit(pytest.main(['--help']))",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "numerical parity between torch and jax/flax:" in result.stdout
    assert "--parity-device=DEVICE" in result.stdout


def test_a_suite_without_frameworks_runs_with_the_plugin_loaded(tmp_path):
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert 1 + 1 == 2\n")
    result = _python(BLOCK_FRAMEWORKS + "import pytest; raise SystemExit(pytest.main(["
                     "'--strict-markers']))", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "parity-0.1.0" in result.stdout and "1 passed" in result.stdout


PLAIN_SUITE = """
import pytest

@pytest.mark.slow
def test_marked_with_a_marker_of_its_own():
    assert sum([1, 2]) == 3

@pytest.mark.parametrize("value", [1, 2])
def test_parametrized(value, tmp_path):
    assert value > 0 and tmp_path.is_dir()
"""


def test_plain_tests_pass_with_the_plugin_disabled(pytester):
    """-p no:parity (and no cache): plain tests run as without the plugin; nothing of it shows."""
    pytester.makepyfile(test_plain=PLAIN_SUITE)
    pytester.makeini("[pytest]\nmarkers =\n    slow: a marker of the suite's own\n")
    result = pytester.runpytest_subprocess("-p", "no:parity", "-p", "no:cacheprovider",
                                           "--strict-markers")
    result.assert_outcomes(passed=3)
    assert "parity" not in result.stdout.str()
    assert pytester.runpytest_subprocess("-p", "no:parity", "--parity-device=cpu").ret == \
        pytest.ExitCode.USAGE_ERROR  # the option is the plugin's: gone with it
