"""The tensor-parallel Llama port (models/llama/sharded.py) on 8 CPU devices against the
unsharded NNX port, and the sharding bugs of tests/support/sharding_bugs.py detected and
localized.

Each case is a child process (tests/sharded/sharded_llama_case.py) with
XLA_FLAGS=--xla_force_host_platform_device_count=8 in its environment: XLA reads the device
count once, as jax starts, so the 8 devices never reach this process or the rest of the suite.
The child prints run_case's JSON. Measured (CPU, seeds 0-2): each case 5.0 to 9.6 s of wall
time on a loaded 2-core machine, jax's start and some 25 compilations included.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.requirements import require

require("flax", "flax is not installed: pip install -e '.[jax]'")

from tests.support.sharding_bugs import BUGS  # noqa: E402  (after the requirement)

CASE = Path(__file__).with_name("sharded_llama_case.py")
DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count=8"
FLOAT32_BOUND = 1e-4
BUG_BOUND = 1.0
LAYER = "model/layers/0"
# The modules of layer 0 (and the head) whose outputs differ, given the unsharded port's
# inputs, with each bug: a diagnosis feeding aligned modules torch's inputs names these.
DIFFERING = {
    "row_parallel_without_psum": {f"{LAYER}/self_attn/o_proj", f"{LAYER}/self_attn",
                                  f"{LAYER}/mlp/down_proj", f"{LAYER}/mlp"},
    "heads_interleaved_across_devices": {f"{LAYER}/self_attn"},
}


def run_case(bug):
    """run_case(bug)'s results, from a child process with 8 CPU devices."""
    flags = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), DEVICE_COUNT_FLAG]))
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, str(CASE), *([bug] if bug else [])], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_the_sharded_port_computes_the_unsharded_ports_logits():
    """Both ports hold the same variables (paths and shapes). Logits (up to 7.5) max abs
    1.8e-5 apart (float32 sums in another order: partial products summed by psum; bound 1e-4,
    margin 0.18); each module of layer 0 and the head, given the same input, at most 2.7e-5
    apart. The variables are sharded as partition_spec says: q_proj's kernel 128 x 16 on each
    device, o_proj's 16 x 128; the logits come out sharded over the vocabulary, on 8
    devices."""
    result = run_case(None)
    assert result["same_variable_tree"]
    assert result["max_abs"] < FLOAT32_BOUND, result
    assert max(result["module_max_abs"].values()) < FLOAT32_BOUND, result["module_max_abs"]
    assert (result["q_proj_spec"], result["q_proj_shards"]) == ("P(None, 'model')", [[128, 16]])
    assert (result["o_proj_spec"], result["o_proj_shards"]) == ("P('model',)", [[16, 128]])
    assert (result["logits_spec"], result["logits_devices"]) == ("P(None, None, 'model')", 8)


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_sharding_bug_moves_the_logits_and_is_localized(bug):
    """Measured max abs change of the logits (up to 7.5): the missing psum 12.2 (each device
    keeps its own partial sum: o_proj 9.1 and down_proj 12.5 apart given the same input,
    self_attn 19.4, mlp 41.9); heads interleaved across devices 9.9 (self_attn 18.8 apart,
    each projection within 3.4e-6: the bug is in the attention core, between them). Every
    module outside DIFFERING[bug] stays within float32's bound."""
    result = run_case(bug)
    assert result["max_abs"] > BUG_BOUND, result
    differing = {path for path, change in result["module_max_abs"].items()
                 if change > FLOAT32_BOUND}
    assert differing == DIFFERING[bug], result["module_max_abs"]
    assert min(result["module_max_abs"][path] for path in differing) > BUG_BOUND
