"""README's first example runs as written, in a repository of its own."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_layer_example_passes_and_is_reported(pytester):
    pytest.importorskip("torch")
    pytest.importorskip("flax")
    example = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    pytester.makepyfile(test_readme=example)
    result = pytester.runpytest("-k", "dense", "-v")
    result.stdout.fnmatch_lines(["*test_dense_matches_linear[[]cpu[]] PASSED*",
                                 "*= parity report: 1 comparison =*"])
    result.assert_outcomes(passed=1, deselected=1)


def test_readme_parity_test_example_passes(pytester):
    pytest.importorskip("torch")
    pytest.importorskip("flax")
    example = next(block for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
                   if "@parity_test" in block)
    pytester.makepyfile(test_readme_layer=example)
    result = pytester.runpytest("-v", "--parity-dtype=float32,bfloat16")
    result.stdout.fnmatch_lines(["*test_conv[[]cpu-float32[]] PASSED*",
                                 "*test_conv[[]cpu-bfloat16[]] PASSED*"])


def test_readme_nnx_example_passes_and_is_reported(pytester):
    pytest.importorskip("torch")
    pytest.importorskip("flax.nnx")
    example = next(block for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
                   if "nnx.Linear" in block)
    pytester.makepyfile(test_readme_nnx=example)
    result = pytester.runpytest("-k", "nnx_linear", "-v")
    result.stdout.fnmatch_lines(["*test_nnx_linear_matches_linear[[]cpu[]] PASSED*",
                                 "*= parity report: 1 comparison =*"])
    result.assert_outcomes(passed=1, deselected=1)


def test_readme_one_sided_layers_example_runs_as_written(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("flax")
    import subprocess
    import sys

    example = next(block for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
                   if "torch_only=" in block)
    (tmp_path / "one_sided_example.py").write_text(example)
    result = subprocess.run([sys.executable, "one_sided_example.py"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_readme_third_party_port_example_passes(pytester):
    pytest.importorskip("torch")
    pytest.importorskip("flax")
    from tests.support.requirements import require

    require("transformers", "transformers is not installed: pip install -e '.[ports]'")
    example = next(block for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
                   if "pair_of(" in block)
    pytester.makepyfile(test_readme_port=example)
    result = pytester.runpytest("-v", "--parity-dtype=float32,bfloat16", "-p", "no:randomly")
    result.stdout.fnmatch_lines(["*test_gpt2_port[[]float32[]] PASSED*",
                                 "*test_gpt2_port[[]bfloat16[]] PASSED*"])
