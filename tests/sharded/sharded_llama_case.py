"""One case of the tensor-parallel Llama port on 8 CPU devices, run as a child process.

`python tests/sharded/sharded_llama_case.py [BUG]` prints run_case(BUG)'s JSON. XLA reads the
device count once, as jax starts, so the parent sets XLA_FLAGS in this process's environment
(the script sets it too when run alone); no other test process sees 8 devices.
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
from flax import nnx  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402

from models.llama.nnx_model import LlamaConfig, LlamaForCausalLM  # noqa: E402
from models.llama.sharded import partition_spec, sharded_nnx_model  # noqa: E402
from tests.support.sharding_bugs import sharding_bug  # noqa: E402

# 16 query heads over 8 kv heads (two query heads a kv head), head_dim 8: each device holds
# two query heads and the kv head they read, 32 MLP columns and 32 vocabulary columns.
CONFIG = LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256,
                     num_hidden_layers=2, num_attention_heads=16, num_key_value_heads=8)
WEIGHT_STD = 0.2
BATCH, LENGTH = 2, 12
LAYER = "model/layers/0"
# The modules module_differences compares, each with its input's width.
LOCALIZED = {**{f"{LAYER}/self_attn/{name}": CONFIG.hidden_size
                for name in ("q_proj", "k_proj", "v_proj")},
             f"{LAYER}/self_attn/o_proj": CONFIG.num_attention_heads * CONFIG.head_dim,
             f"{LAYER}/self_attn": CONFIG.hidden_size,
             **{f"{LAYER}/mlp/{name}": CONFIG.hidden_size for name in ("gate_proj", "up_proj")},
             f"{LAYER}/mlp/down_proj": CONFIG.intermediate_size,
             f"{LAYER}/mlp": CONFIG.hidden_size,
             "lm_head": CONFIG.hidden_size}


def _path(keys: tuple) -> str:
    return "/".join(str(key) for key in keys)


def drawn_variables(seed: int = 0) -> dict[str, np.ndarray]:
    """Every variable of the port by path: kernels and the embedding table at std 0.2, each
    RMSNorm weight around 1 (std 0.2), as models/llama/small.py draws them."""
    rng = np.random.default_rng(seed)
    state = nnx.state(LlamaForCausalLM(CONFIG, rngs=nnx.Rngs(seed)))
    variables = {}
    for keys, variable in nnx.to_flat_state(state):
        shape = variable[...].shape
        centre = 1.0 if keys[-1] == "weight" else 0.0
        variables[_path(keys)] = (centre + WEIGHT_STD * rng.standard_normal(shape)).astype(
            np.float32)
    return variables


def with_variables(module: nnx.Module, place) -> tuple[nnx.GraphDef, nnx.State]:
    """The module's graph and its state, each variable `place(path, value)`."""
    graphdef, state = nnx.split(module)
    flat = [(keys, variable.replace(place(_path(keys), variable[...])))
            for keys, variable in nnx.to_flat_state(state)]
    return graphdef, nnx.from_flat_state(flat)


def variable_shapes(module: nnx.Module) -> dict[str, tuple]:
    return {_path(keys): variable[...].shape
            for keys, variable in nnx.to_flat_state(nnx.state(module))}


def _inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    mask = np.ones((BATCH, LENGTH), np.int32)
    mask[1, -3:] = 0  # the second row padded at the end
    return {"input_ids": rng.integers(0, CONFIG.vocab_size, (BATCH, LENGTH)),
            "attention_mask": mask}


def _logits(graphdef: nnx.GraphDef, state: nnx.State, inputs: dict) -> jax.Array:
    def forward(state, input_ids, attention_mask):
        return nnx.merge(graphdef, state)(input_ids, attention_mask=attention_mask)["logits"]

    return jax.jit(forward)(state, inputs["input_ids"], inputs["attention_mask"])


def _submodule(model: nnx.Module, path: str) -> nnx.Module:
    for name in path.split("/"):
        model = model[int(name)] if name.isdigit() else getattr(model, name)
    return model


def module_differences(reference: nnx.Module, model: nnx.Module) -> dict[str, float]:
    """Each of LOCALIZED's modules of the sharded port against the unsharded one, both given
    the same drawn input (std 1): the outputs' max abs difference, as a diagnosis that feeds
    each aligned module torch's inputs sees it."""
    rng = np.random.default_rng(2)
    differences = {}
    for path, width in LOCALIZED.items():
        hidden = rng.standard_normal((BATCH, LENGTH, width)).astype(np.float32)
        outputs = [np.asarray(nnx.jit(lambda module, x: module(x))(_submodule(side, path),
                                                                   hidden))
                   for side in (reference, model)]
        differences[path] = float(np.abs(outputs[1] - outputs[0]).max())
    return differences


def _shard_shapes(array: jax.Array) -> list[list[int]]:
    return sorted({tuple(shard.data.shape) for shard in array.addressable_shards})


def run_case(bug: str | None) -> dict:
    """The sharded port (with `bug`, one of tests/support/sharding_bugs.BUGS, injected) against
    the unsharded port on the same drawn variables: the logits' max abs difference, and how
    the variables and logits were sharded."""
    if jax.device_count() != DEVICES:
        raise RuntimeError(f"{jax.device_count()} devices, not {DEVICES}: set XLA_FLAGS="
                           f"{XLA_FLAGS} before jax starts")
    started = time.perf_counter()
    variables, inputs = drawn_variables(), _inputs()
    reference_parts = with_variables(LlamaForCausalLM(CONFIG, rngs=nnx.Rngs(0)),
                                     lambda path, value: variables[path])
    reference = _logits(*reference_parts, inputs)
    mesh = Mesh(np.array(jax.devices()), ("model",))

    def placed(path: str, value: jax.Array) -> jax.Array:
        spec = partition_spec(path, value.shape)
        return jax.device_put(variables[path], NamedSharding(mesh, spec))

    graphdef, state = with_variables(sharded_nnx_model(CONFIG), placed)
    with jax.set_mesh(mesh), sharding_bug(bug) if bug else nullcontext():
        logits = _logits(graphdef, state, inputs)
        modules = module_differences(nnx.merge(*reference_parts), nnx.merge(graphdef, state))
    attention = state["model"]["layers"][0]["self_attn"]
    q_kernel, o_kernel = attention["q_proj"]["kernel"], attention["o_proj"]["kernel"]
    logits_sharding = logits.sharding
    logits, reference = np.asarray(logits), np.asarray(reference)
    difference = np.abs(logits - reference)
    return {
        "bug": bug,
        "same_variable_tree": variable_shapes(sharded_nnx_model(CONFIG)) == variable_shapes(
            LlamaForCausalLM(CONFIG, rngs=nnx.Rngs(0))),
        "max_abs": float(difference.max()),
        # worst |difference| / (atol + rtol |reference|) at rtol = atol = 1e-5: np.allclose's
        # test passes where this is at most 1
        "allclose_ratio": float((difference / (1e-5 + 1e-5 * np.abs(reference))).max()),
        "module_max_abs": modules,
        "reference_max_abs": float(np.abs(np.asarray(reference)).max()),
        "q_proj_spec": str(q_kernel[...].sharding.spec),
        "q_proj_shards": _shard_shapes(q_kernel[...]),
        "o_proj_spec": str(o_kernel[...].sharding.spec),
        "o_proj_shards": _shard_shapes(o_kernel[...]),
        "logits_spec": str(logits_sharding.spec),
        "logits_devices": len(logits_sharding.device_set),
        "seconds": time.perf_counter() - started,
    }


if __name__ == "__main__":
    print(json.dumps(run_case(sys.argv[1] if len(sys.argv) > 1 else None)))
