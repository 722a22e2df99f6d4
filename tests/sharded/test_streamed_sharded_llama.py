"""The tensor-parallel Llama port (models/llama/sharded.py) on 8 CPU devices against
transformers' LlamaForCausalLM, checked by `assert_streamed_close` with the Flax variables
sharded over the mesh: the correct port passes, each sharding bug of
tests/support/sharding_bugs.py fails the first decoder layer's block and the diagnosis inside
it names the module.

Every case runs in one child process (tests/sharded/streamed_sharded_case.py) with
XLA_FLAGS=--xla_force_host_platform_device_count=8 in its environment: XLA reads the device
count once, as jax starts, so the 8 devices never reach this process or the rest of the suite.
Measured (CPU): the child 11-15 s of wall time for the four cases, its start (jax, torch,
transformers) some 5 s of it; each case 1-5 s.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.requirements import require

require("flax", "flax is not installed: pip install -e '.[jax]'")
require("transformers", "transformers is not installed: pip install -e '.[ports]'")

CASE = Path(__file__).with_name("streamed_sharded_case.py")
DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count=8"
CASES = ("float32", "bfloat16", "float32:row_parallel_without_psum",
         "float32:heads_interleaved_across_devices")
LAYER_0 = "torch model.layers.0 <-> flax model/layers/0"


@pytest.fixture(scope="module")
def results():
    """run_case's result of each of CASES, by case, from one child with 8 CPU devices."""
    flags = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), DEVICE_COUNT_FLAG]))
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(CASE), *CASES], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(zip(CASES, json.loads(done.stdout.splitlines()[-1]), strict=True))


def _sharded(result):
    """The variables really were placed sharded: q_proj's kernel 128 x 16 on each of 8."""
    return result["placed"] == {"spec": "P(None, 'model')", "devices": 8, "shards": [[128, 16]]}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_sharded_port_passes_the_streamed_check_against_torch(dtype, results):
    """Each decoder layer one block, every block and the logits within tolerance. Measured
    margins (draws 0-3): float32 layer 0 0.37-0.50, layer 1 0.19-0.27, logits 0.14-0.19 (at
    atol 1e-4: streamed_sharded_case.TOLERANCE says why); bfloat16 (default budget) layer 0
    0.30-0.34, layer 1 0.36-0.38, logits 0.32-0.34."""
    result = results[dtype]
    assert result["passed"], result.get("text")
    assert set(result["blocks"]) == {"model.embed_tokens", "model.layers.0", "model.layers.1",
                                     "model.norm", "lm_head"}
    assert max(result["blocks"].values()) < 1 and result["output_margin"] < 1
    assert _sharded(result), result["placed"]


def test_a_row_parallel_layer_without_its_psum_is_found_in_o_proj(results):
    """Each device keeping its own partial sum: the first failing block is layer 0, and the
    first module that diverges on torch's inputs is its o_proj (q, k, v within tolerance)."""
    result = results["float32:row_parallel_without_psum"]
    assert not result["passed"] and _sharded(result)
    assert result["first_failing"] == LAYER_0
    assert result["culprit"].startswith(
        "first divergent module: torch self_attn.o_proj <-> flax self_attn/o_proj")


def test_heads_interleaved_across_devices_are_found_in_self_attn(results):
    """Each device attending heads that are not the ones its q_proj columns computed: layer 0
    fails, and the diagnosis names self_attn, its own code between v_proj and o_proj (every
    projection within tolerance)."""
    result = results["float32:heads_interleaved_across_devices"]
    assert not result["passed"] and _sharded(result)
    assert result["first_failing"] == LAYER_0
    assert result["culprit"].startswith(
        "first divergent module: torch self_attn <-> flax self_attn")
    assert "between self_attn.v_proj and self_attn.o_proj" in result["culprit"]
