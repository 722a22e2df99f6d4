"""The peak memory of a streamed parity check (`assert_streamed_close`, issue 28) of a model
larger than that memory: the zoo's big Llama (models/llama/big.py, 2,102,718,464 bytes of
float32 weights per side), two prompts of 16 tokens, in a fresh process
(tests/benchmarks/streamed_case.py), so that neither pytest's memory nor an earlier test's
counts.

Its checkpoint is written once into pytest's cache folder, tensor by tensor
(models.llama.big.cached_checkpoint), and served from there while it stays intact and the
seed's: checked by reading and hashing one tensor at a time (measured here: writing 11.4 s,
checking 2.9 s). The figures go to extra_info; the gate ([tool.parity] gates in
pyproject.toml) hold the peak to 0.75 of the weights of one side (1.5 GB of 2 GB, the issue's
figure) and the memory above the process's floor to 0.3 of them (pyproject says why): the
floor (torch, jax, flax and transformers imported, the torch model built with its parameters
on the meta device, JAX's backend started) was measured at 491-629 MB, so each side may hold
a few hundred MB of weights at once: MEMORY below.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.requirements import require

pytest.importorskip("pytest_benchmark")
pytest.importorskip("torch")
pytest.importorskip("flax")
require("transformers", "transformers is not installed: pip install -e '.[ports]'")

CASE = Path(__file__).with_name("streamed_case.py")
ROOT = Path(__file__).resolve().parents[2]
CACHE_FOLDER = "parity-streamed"
# Weights per side resident at once: the floor (~530 MB) and two sides of 400 MB stay under
# 1.5 GB, with room for activations and compiled blocks; the largest block is 131 MB.
MEMORY = "400MB"


def _child(*arguments):
    result = subprocess.run([sys.executable, str(CASE), *arguments], cwd=ROOT,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_streamed_check_floor(benchmark):
    """The fresh process's memory before any weight: the frameworks imported and the torch
    model built with its parameters on the meta device (its buffers real)."""
    figures = benchmark.pedantic(_child, args=("imports",), rounds=1, iterations=1)
    benchmark.extra_info.update(imports_rss_mb=figures["peak_rss_mb"],
                                meta_build_s=figures["meta_build_s"],
                                weights_mb=figures["weights_mb"])
    assert figures["peak_rss_mb"] < 0.5 * figures["weights_mb"]


@pytest.mark.slow
def test_streamed_memory(benchmark, request, tmp_path_factory):
    """The 2.1 GB check runs where benchmarks are timed (nox -s gate, which CI runs; nox -s
    bench), outside the test sessions, as issue 28 asks: its checkpoint alone takes 12 s to
    write on a clean clone, and the gate is its only verdict worth the time."""
    if request.config.getoption("benchmark_disable"):
        pytest.skip("the 2.1 GB streamed check runs in nox -s gate (timed benchmarks only)")
    from models.llama.big import cached_checkpoint

    started = time.perf_counter()
    cache = getattr(request.config, "cache", None)  # none under -p no:cacheprovider
    folder = cache.mkdir(CACHE_FOLDER) if cache else tmp_path_factory.mktemp(CACHE_FOLDER)
    path, write_s = cached_checkpoint(folder)
    ready_s = time.perf_counter() - started
    floor = _child("imports")
    figures = benchmark.pedantic(_child, args=("streamed", str(path), MEMORY),
                                 rounds=1, iterations=1)
    benchmark.extra_info.update(
        peak_rss_mb=figures["peak_rss_mb"], weights_mb=figures["weights_mb"],
        imports_rss_mb=floor["peak_rss_mb"], largest_block_mb=figures["largest_block_mb"],
        extra_rss_mb=figures["peak_rss_mb"] - floor["peak_rss_mb"],
        check_s=figures["check_s"], checkpoint_ready_s=ready_s,
        checkpoint_written=write_s is not None, checkpoint_mb=path.stat().st_size / 2**20,
        peak_over_weights=figures["peak_rss_mb"] / figures["weights_mb"])
    assert figures["passed"]
