"""README's examples run as written, each in a project of its own; every Python block of the
README is one of them."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LAYER_CHECKS = ROOT / "docs" / "layer-checks.md"

# What marks each README example: every ```python block holds exactly one of these.
FIRST_TESTS = "def test_dense_matches_linear"
PAIRS_MODULE, PAIR_TEST = "# mypairs.py", "# test_mlp.py"
PORT, LAYER_CHECK = "def test_gpt2_port", "@parity_test("
EXAMPLES = (FIRST_TESTS, PAIRS_MODULE, PAIR_TEST, PORT, LAYER_CHECK)


def _blocks(path: Path, language: str = "python") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.S)


def _block(marker: str, path: Path = README) -> str:
    (found,) = [block for block in _blocks(path) if marker in block]
    return found


def test_every_python_block_of_the_readme_is_an_example_run_here():
    for block in _blocks(README):
        assert sum(marker in block for marker in EXAMPLES) == 1, block[:200]


def test_readme_is_a_quick_start():
    assert len(README.read_text().splitlines()) < 250


@pytest.fixture
def frameworks():
    pytest.importorskip("torch")
    pytest.importorskip("flax.nnx")


def test_readme_first_tests_pass_and_are_reported(pytester, frameworks):
    pytester.makepyfile(test_readme=_block(FIRST_TESTS))
    result = pytester.runpytest("-v")
    result.stdout.fnmatch_lines(["*test_dense_matches_linear[[]cpu[]] PASSED*",
                                 "*test_nnx_linear_matches_linear[[]cpu[]] PASSED*",
                                 "*= parity report: 2 comparisons =*"])
    result.assert_outcomes(passed=2)


def test_readme_registered_pair_passes_from_its_pyproject(pytester, frameworks):
    (toml,) = [block for block in _blocks(README, "toml") if "[tool.parity.pairs]" in block]
    pytester.makepyprojecttoml(toml)
    pytester.makepyfile(mypairs=_block(PAIRS_MODULE), test_mlp=_block(PAIR_TEST))
    result = pytester.runpytest_subprocess("-v", "--parity-dtype=float32,bfloat16",
                                           "-p", "no:randomly")
    result.stdout.fnmatch_lines(["*test_mlp[[]cpu-float32[]] PASSED*",
                                 "*test_mlp[[]cpu-bfloat16[]] PASSED*",
                                 "*= parity report: 2 comparisons =*"])


def test_readme_parity_test_example_passes(pytester, frameworks):
    pytester.makepyfile(test_readme_layer=_block(LAYER_CHECK))
    result = pytester.runpytest("-v", "--parity-dtype=float32,bfloat16")
    result.stdout.fnmatch_lines(["*test_conv[[]cpu-float32[]] PASSED*",
                                 "*test_conv[[]cpu-bfloat16[]] PASSED*"])


def test_readme_third_party_port_example_passes(pytester, frameworks):
    from tests.support.requirements import require

    require("transformers", "transformers is not installed: pip install -e '.[ports]'")
    pytester.makepyfile(test_readme_port=_block(PORT))
    result = pytester.runpytest("-v", "--parity-dtype=float32,bfloat16", "-p", "no:randomly")
    result.stdout.fnmatch_lines(["*test_gpt2_port[[]float32[]] PASSED*",
                                 "*test_gpt2_port[[]bfloat16[]] PASSED*"])


def test_one_sided_layers_example_runs_as_written(tmp_path, frameworks):
    (tmp_path / "one_sided_example.py").write_text(_block("torch_only=", LAYER_CHECKS))
    result = subprocess.run([sys.executable, "one_sided_example.py"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
