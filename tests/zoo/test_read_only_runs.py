"""Runs without pytest's cache (-p no:cacheprovider, common in read-only CI), with and without
xdist, run the zoo's ResNet-18 case; and where every run keeps its checkpoints.

`'Config' object has no attribute 'cache'` broke `parity_pair` and `parity_checkpoint` there
once; a 45 MB checkpoint landed in ~/.cache/pytest-parity during the tests. Each run here is a
real pytest process in this repository, with HOME and TMPDIR of its own to see what it wrote.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("flax")

ROOT = Path(__file__).resolve().parents[2]
CASE = "tests/zoo/test_zoo_parity.py::test_torch_and_flax_logits_agree[cpu-float32-resnet18]"
CHECKPOINT = "resnet18-seed0-v1.h5"


def _run(tmp_path, *options):
    home, temporary = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    temporary.mkdir()
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(temporary)}
    env.pop("XDG_CACHE_HOME", None)
    env.pop("PYTEST_PARITY_CACHE", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", CASE, "-q", "-p", "no:randomly", "--benchmark-disable",
         "--parity-jax-cache=none", *options], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout
    return home, temporary


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_without_pytests_cache_the_checkpoint_is_kept_in_the_temporary_directory(
        tmp_path, workers):
    home, temporary = _run(tmp_path, "-p", "no:cacheprovider", *workers)
    assert (temporary / "pytest-parity-checkpoints" / CHECKPOINT).is_file()
    assert not list(home.rglob("*.h5"))  # nothing in ~/.cache


def test_with_pytests_cache_a_run_writes_inside_the_repository_only(tmp_path):
    home, temporary = _run(tmp_path)
    assert (ROOT / ".pytest_cache" / "d" / "parity-checkpoints" / CHECKPOINT).is_file()
    assert not list(home.rglob("*.h5")) and not list(temporary.rglob("*.h5"))
