"""The NNX Llama port (models/llama/nnx_model.py), tensor parallel over a mesh axis "model".

Megatron's split: q_proj, k_proj, v_proj, gate_proj, up_proj and lm_head are column parallel
(each device multiplies the whole input by its block of the kernel's columns, its output
sharded over the last axis, no collective); o_proj and down_proj are row parallel (each device
multiplies its shard of the input by its block of the kernel's rows, then a psum over "model"
sums the partial products: the output replicated); the attention core (rotary, scores,
softmax, values) runs inside a shard_map over heads, device d holding query heads
d * H/n .. (d + 1) * H/n - 1 (the columns its q_proj computed) and the kv heads they read.
Embeddings and norms are replicated. `partition_spec` gives each variable's spec.

Each projection is its own module whose inputs and outputs are global arrays (the shard_map
sits inside its __call__), so a diagnosis that feeds one module torch's inputs localizes a
sharding bug to it. The variable tree is nnx_model.LlamaForCausalLM's, path for path and shape
for shape: one checkpoint and one mapping (models/llama/mapping.py) serve both. The
conventions are nnx_model's functions, looked up at call time, so tests/support/llama_bugs.py
reaches this port too; the sharding conventions are this module's functions, swapped by
tests/support/sharding_bugs.py.

Run under `with jax.set_mesh(mesh):` (shard_map takes the mesh from it), a mesh with an axis
"model" of Auto type (jax.sharding.Mesh's default; jax.make_mesh's default is Explicit).
Heads, kv heads, the MLP width and the vocabulary must divide by the axis size. No KV cache:
the sharded port computes whole sequences only (cache=None).
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import PartitionSpec

from models.llama import nnx_model
from models.llama.nnx_model import LlamaConfig

MODEL_AXIS = "model"
COLUMNS_SHARDED = PartitionSpec(None, MODEL_AXIS)
ROWS_SHARDED = PartitionSpec(MODEL_AXIS, None)
REPLICATED = PartitionSpec()
# Variable path patterns (the Flax path without its collection) and their specs; a path that
# matches none is replicated (the embedding table, every RMSNorm's weight).
PARTITION_SPECS = (
    (re.compile(r"(q_proj|k_proj|v_proj|gate_proj|up_proj|lm_head)/kernel$"), COLUMNS_SHARDED),
    (re.compile(r"(o_proj|down_proj)/kernel$"), ROWS_SHARDED),
)


def partition_spec(path: str, shape: tuple) -> PartitionSpec:
    """The spec of the variable at `path` ("model/layers/0/self_attn/q_proj/kernel")."""
    for pattern, spec in PARTITION_SPECS:
        if pattern.search(path):
            if len(shape) != len(spec):
                raise ValueError(f"{path}: a kernel of shape {shape}, not 2-D")
            return spec
    return REPLICATED


def sharded_last_axis(ndim: int) -> PartitionSpec:
    return PartitionSpec(*(None,) * (ndim - 1), MODEL_AXIS)


def column_parallel(inputs: jax.Array, kernel: jax.Array) -> jax.Array:
    """inputs (..., in), replicated, times kernel (in, out) sharded over its columns: (..., out)
    sharded over its last axis, each device's block its own columns' (no collective)."""
    return jax.shard_map(jnp.matmul, in_specs=(REPLICATED, COLUMNS_SHARDED),
                         out_specs=sharded_last_axis(inputs.ndim))(inputs, kernel)


def row_parallel(inputs: jax.Array, kernel: jax.Array) -> jax.Array:
    """inputs (..., in) sharded over its last axis times kernel (in, out) sharded over its rows:
    each device's partial product, summed over the devices (psum), replicated."""
    def summed_partial_product(inputs_shard: jax.Array, kernel_shard: jax.Array) -> jax.Array:
        return jax.lax.psum(inputs_shard @ kernel_shard, MODEL_AXIS)

    return jax.shard_map(summed_partial_product,
                         in_specs=(sharded_last_axis(inputs.ndim), ROWS_SHARDED),
                         out_specs=REPLICATED)(inputs, kernel)


def model_axis_size() -> int:
    """The size of the axis "model" of the mesh in context (jax.set_mesh)."""
    mesh = jax.sharding.get_abstract_mesh()
    if MODEL_AXIS not in mesh.axis_names:
        raise ValueError(f"the sharded Llama port runs under `with jax.set_mesh(mesh):`, a mesh "
                         f"with an axis {MODEL_AXIS!r}; the mesh in context: {mesh}")
    return mesh.shape[MODEL_AXIS]


def head_blocks(flat: jax.Array, head_dim: int, devices: int
                ) -> tuple[jax.Array, PartitionSpec]:
    """Heads (B, L, heads * head_dim) laid out for the shard_map over heads, and the layout's
    spec: (B, L, devices, heads / devices, head_dim), device d holding the contiguous block d
    (the columns its column-parallel projection computed; its kv heads those its query heads
    read)."""
    batch, length, _ = flat.shape
    return (flat.reshape(batch, length, devices, -1, head_dim),
            PartitionSpec(None, None, MODEL_AXIS, None, None))


def _local_attention(queries: jax.Array, keys: jax.Array, values: jax.Array, cos: jax.Array,
                     sin: jax.Array, allowed: jax.Array) -> jax.Array:
    """One device's block of heads, (B, L, 1, heads / devices, D) or however head_blocks laid
    it out, attended as nnx_model.LlamaAttention attends: (B, L, heads / devices * D)."""
    batch, length, *_, head_dim = queries.shape
    queries, keys, values = (heads.reshape(batch, length, -1, head_dim)
                             for heads in (queries, keys, values))
    queries = nnx_model.apply_rotary(queries, cos, sin)
    keys = nnx_model.apply_rotary(keys, cos, sin)
    groups = queries.shape[2] // keys.shape[2]
    scores = jnp.einsum("bqhd,bkhd->bhqk", queries, nnx_model.repeat_kv(keys, groups)) \
        * head_dim ** -0.5
    scores = nnx_model.masked_scores(scores, allowed, length)
    weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(queries.dtype)
    attended = jnp.einsum("bhqk,bkhd->bqhd", weights, nnx_model.repeat_kv(values, groups))
    return attended.reshape(batch, length, -1)


class ColumnParallelLinear(nnx.Linear):
    """nnx.Linear (no bias) computed by column_parallel: its output sharded over the last axis."""

    def __call__(self, inputs: jax.Array) -> jax.Array:
        return column_parallel(inputs.astype(self.dtype), self.kernel[...].astype(self.dtype))


class RowParallelLinear(nnx.Linear):
    """nnx.Linear (no bias) computed by row_parallel: its output replicated."""

    def __call__(self, inputs: jax.Array) -> jax.Array:
        return row_parallel(inputs.astype(self.dtype), self.kernel[...].astype(self.dtype))


def _linear(kind: type[nnx.Linear], size_in: int, size_out: int, dtype: Any,
            rngs: nnx.Rngs) -> nnx.Linear:
    return kind(size_in, size_out, use_bias=False, dtype=dtype, rngs=rngs)


class ShardedLlamaMLP(nnx_model.LlamaMLP):
    """SwiGLU with gate and up column parallel, down row parallel (LlamaMLP's __call__)."""

    def __init__(self, config: LlamaConfig, *, dtype: Any, rngs: nnx.Rngs) -> None:
        self.dtype = dtype
        hidden, intermediate = config.hidden_size, config.intermediate_size
        self.gate_proj = _linear(ColumnParallelLinear, hidden, intermediate, dtype, rngs)
        self.up_proj = _linear(ColumnParallelLinear, hidden, intermediate, dtype, rngs)
        self.down_proj = _linear(RowParallelLinear, intermediate, hidden, dtype, rngs)


class ShardedLlamaAttention(nnx_model.LlamaAttention):
    """Grouped-query attention, q, k, v column parallel, the core a shard_map over heads,
    o_proj row parallel. Whole sequences only: no KV cache."""

    def __init__(self, config: LlamaConfig, *, dtype: Any, rngs: nnx.Rngs) -> None:
        self.config = config
        self.dtype = dtype
        hidden, head_dim = config.hidden_size, config.head_dim
        query_width = config.num_attention_heads * head_dim
        kv_width = config.num_key_value_heads * head_dim
        self.q_proj = _linear(ColumnParallelLinear, hidden, query_width, dtype, rngs)
        self.k_proj = _linear(ColumnParallelLinear, hidden, kv_width, dtype, rngs)
        self.v_proj = _linear(ColumnParallelLinear, hidden, kv_width, dtype, rngs)
        self.o_proj = _linear(RowParallelLinear, query_width, hidden, dtype, rngs)

    def __call__(self, hidden_states: jax.Array, attention_mask: Any = None,
                 position_ids: Any = None, cache: Any = None, cache_index: Any = None) -> Any:
        if cache is not None:
            raise NotImplementedError("the sharded Llama port computes whole sequences only")
        batch, length, _ = hidden_states.shape
        attention_mask, position_ids, _ = nnx_model.call_defaults(
            attention_mask, position_ids, None, batch, length, length)
        head_dim = self.config.head_dim
        cos, sin = (angle.astype(hidden_states.dtype) for angle in
                    nnx_model.rotary_angles(position_ids, head_dim, self.config.rope_theta))
        allowed = nnx_model.attention_allowed(jnp.arange(length), attention_mask)
        devices = model_axis_size()
        blocks = [head_blocks(projection(hidden_states), head_dim, devices)
                  for projection in (self.q_proj, self.k_proj, self.v_proj)]
        attended = jax.shard_map(
            _local_attention, in_specs=(*(spec for _, spec in blocks), *(REPLICATED,) * 3),
            out_specs=sharded_last_axis(3))(*(heads for heads, _ in blocks), cos, sin, allowed)
        return self.o_proj(attended)


class ShardedLlamaDecoderLayer(nnx_model.LlamaDecoderLayer):
    def __init__(self, config: LlamaConfig, *, dtype: Any, rngs: nnx.Rngs) -> None:
        self.dtype = dtype
        self.input_layernorm = nnx_model.LlamaRMSNorm(config.hidden_size, config.rms_norm_eps,
                                                      dtype=dtype)
        self.self_attn = ShardedLlamaAttention(config, dtype=dtype, rngs=rngs)
        self.post_attention_layernorm = nnx_model.LlamaRMSNorm(
            config.hidden_size, config.rms_norm_eps, dtype=dtype)
        self.mlp = ShardedLlamaMLP(config, dtype=dtype, rngs=rngs)


class ShardedLlamaModel(nnx_model.LlamaModel):
    def __init__(self, config: LlamaConfig, *, dtype: Any, rngs: nnx.Rngs) -> None:
        self.dtype = dtype
        self.embed_tokens = nnx.Embed(config.vocab_size, config.hidden_size, dtype=dtype,
                                      rngs=rngs)
        self.layers = nnx.List([ShardedLlamaDecoderLayer(config, dtype=dtype, rngs=rngs)
                                for _ in range(config.num_hidden_layers)])
        self.norm = nnx_model.LlamaRMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype)


class ShardedLlamaForCausalLM(nnx_model.LlamaForCausalLM):
    """The sharded decoder and a column-parallel head: logits sharded over the vocabulary."""

    def __init__(self, config: LlamaConfig, *, dtype: Any = jnp.float32,
                 rngs: nnx.Rngs) -> None:
        self.config = config
        self.dtype = dtype
        self.model = ShardedLlamaModel(config, dtype=dtype, rngs=rngs)
        self.lm_head = _linear(ColumnParallelLinear, config.hidden_size, config.vocab_size,
                               dtype, rngs)


def sharded_nnx_model(config: LlamaConfig, *, dtype: Any = jnp.float32,
                      rngs: nnx.Rngs | None = None) -> ShardedLlamaForCausalLM:
    """The tensor-parallel port of `config` (its variables come from the checkpoint)."""
    return ShardedLlamaForCausalLM(config, dtype=dtype, rngs=rngs or nnx.Rngs(0))
