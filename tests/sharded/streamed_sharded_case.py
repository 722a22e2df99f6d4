"""Cases of the tensor-parallel Llama port on 8 CPU devices checked against transformers'
LlamaForCausalLM by `assert_streamed_close`, run as a child process.

`python tests/sharded/streamed_sharded_case.py DTYPE[:BUG] ...` prints the list of each
case's run_case(DTYPE, BUG), all in one process (jax, torch and transformers start once). The
parent sets XLA_FLAGS (8 host devices) in this process's environment (the script sets it too
when run alone): XLA reads the device count once, as jax starts.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

DEVICES = 8
XLA_FLAGS = f"--xla_force_host_platform_device_count={DEVICES}"
os.environ.setdefault("XLA_FLAGS", XLA_FLAGS)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax  # noqa: E402  (after XLA_FLAGS)
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

from models.llama.mapping import llama_mapping  # noqa: E402
from models.llama.nnx_model import LlamaConfig  # noqa: E402
from models.llama.sharded import partition_spec, sharded_nnx_model  # noqa: E402
from pytest_parity import assert_streamed_close  # noqa: E402
from pytest_parity.checkpoint import checkpoint_from_torch  # noqa: E402
from pytest_parity.inputs import Input  # noqa: E402
from pytest_parity.registry import Pair  # noqa: E402
from pytest_parity.run import streamed_placement  # noqa: E402
from tests.support.sharding_bugs import sharding_bug  # noqa: E402

# 16 query heads over 8 kv heads (two query heads a kv head), head_dim 8: each device holds
# two query heads and the kv head they read, 32 MLP columns and 32 vocabulary columns.
CONFIG = LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256,
                     num_hidden_layers=2, num_attention_heads=16, num_key_value_heads=8)

# Each decoder layer (147,712 float32 weights, 591 KB) one block; the embedding table and the
# head (131 KB each) blocks of their own.
MEMORY = "600KB"
BATCH, LENGTH = 2, 12
INPUTS = (Input("input_ids", (BATCH, LENGTH), "int64", high=CONFIG.vocab_size),
          Input("attention_mask", (BATCH, LENGTH), "int64", mask=True),
          Input("position_ids", (BATCH, LENGTH), "int64", high=128))
# float32: the llama pair's rtol (models/registry.py), atol 1e-4 where the defaults give 1e-5.
# Measured (draws 0-3): a decoder layer's outputs reach 46-74 here (the residual stream of
# std-0.2 weights over 128 features), and torch's own float32 layer 0 is 4.3e-5 to 4.9e-5 from
# its float64 run, so the default atol is below torch's own rounding: the unsharded NNX port
# misses it too (layer 0 4.4e-5 from torch). The sharded port's layer 0 is 4.5e-5 to 6.5e-5
# from torch (psum sums its partial products in another order); at atol 1e-4 the margins are
# 0.37-0.50 (layer 0), 0.19-0.27 (layer 1), 0.14-0.19 (logits).
TOLERANCE = {"float32": {"rtol": 2.6e-6, "atol": 1e-4}}
WATCHED = "model/layers/0/self_attn/q_proj/kernel"  # a placed variable whose shards we record


def torch_model():
    """transformers' LlamaForCausalLM of CONFIG, drawn as models/llama/small.py draws it."""
    from dataclasses import asdict

    from models.llama import small

    return small.torch_model(asdict(CONFIG))


def sharded_pair() -> Pair:
    """A fresh pair: the Flax side the sharded port of CONFIG."""
    return Pair("llama_sharded", torch_model, lambda: sharded_nnx_model(CONFIG),
                llama_mapping("llama_sharded"), inputs=INPUTS, torch_call={"use_cache": False})


def _watching(placed: dict) -> object:
    """Placement.variable recording the shards of WATCHED as it is placed."""
    original = streamed_placement.Placement.variable

    def variable(self, path, array):
        value = original(self, path, array)
        if path == WATCHED and hasattr(value, "sharding"):
            placed.update(spec=str(value.sharding.spec), devices=len(value.sharding.device_set),
                          shards=sorted({tuple(s.data.shape) for s in value.addressable_shards}))
        return value
    return variable


def _culprit(text: str) -> str:
    """The diagnosis's culprit: its 'first divergent module' line, and the line after it
    where that says where inside the module."""
    lines = [line.strip() for line in text.split("inside it:", 1)[-1].splitlines()]
    for at, line in enumerate(lines):
        if line.startswith("first divergent module"):
            after = lines[at + 1] if at + 1 < len(lines) else ""
            return f"{line} {after}" if after.startswith("its own code") else line
    return ""


def run_case(dtype: str, bug: str | None, draw: int = 0) -> dict:
    """assert_streamed_close of the sharded port (with `bug` injected) against torch, on the
    pair's example inputs of seed `draw`."""
    import torch

    if jax.device_count() != DEVICES:
        raise RuntimeError(f"{jax.device_count()} devices, not {DEVICES}: set XLA_FLAGS="
                           f"{XLA_FLAGS} before jax starts")
    started = time.perf_counter()
    pair = sharded_pair()
    torch.manual_seed(0)
    checkpoint = checkpoint_from_torch(pair.torch_model().state_dict(), pair)
    inputs = pair.example_inputs(draw)
    mesh = Mesh(np.array(jax.devices()), ("model",))
    placed: dict = {}
    result = {"dtype": dtype, "bug": bug, "draw": draw}
    original = streamed_placement.Placement.variable
    streamed_placement.Placement.variable = _watching(placed)
    try:
        with sharding_bug(bug) if bug else nullcontext():
            streamed = assert_streamed_close(pair, inputs, checkpoint=checkpoint, memory=MEMORY,
                                             dtype=dtype, mesh=mesh, shardings=partition_spec,
                                             **TOLERANCE.get(dtype, {}))
        result.update(passed=True, blocks={b.block.torch: b.comparison.margin
                                           for b in streamed.blocks},
                      output_margin=streamed.output.margin,
                      output_max_abs=streamed.output.max_abs)
    except AssertionError as failure:
        text = str(failure)
        first = text.split("the first failing block: ", 1)[-1].split(";", 1)[0] \
            if "the first failing block" in text else None
        result.update(passed=False, first_failing=first, culprit=_culprit(text),
                      text=text[-4000:])
    finally:
        streamed_placement.Placement.variable = original
    result.update(placed=placed, seconds=time.perf_counter() - started)
    return result


if __name__ == "__main__":  # each argument a case, DTYPE or DTYPE:BUG; one JSON list
    cases = [(argument.partition(":")[0], argument.partition(":")[2] or None)
             for argument in sys.argv[1:] or ["float32"]]
    print(json.dumps([run_case(dtype, bug) for dtype, bug in cases]))
