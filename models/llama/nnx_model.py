"""transformers' LlamaForCausalLM in Flax NNX, module for module.

Attributes carry transformers' module names, so a torch key is its NNX variable's path with
'/' (`model.layers.0.self_attn.q_proj.weight` is `model/layers/0/self_attn/q_proj/kernel`)
and a diagnosis names one module on both sides. The conventions are transformers' eager
ones: RMSNorm computed in float32, cast back, then times its weight; rotary embeddings in the
halves pairing (rotate_half), their angles in float32 cast to the compute dtype; query head h
reading key/value head h // (heads // kv_heads) (repeat_kv); softmax in float32. Each
convention is one module-level function, so that a test can swap in the other one
(tests/support/llama_bugs.py).

The attention makes its own rotary angles from `position_ids` and its own mask from the 2-D
padding mask: a query at cache position q attends key position k iff k <= q and
attention_mask[b, k] == 1. Given a cache (one (keys, values) per layer, each (B, max_length,
kv_heads, head_dim)), a call writes its keys and values at `cache_index`, its queries sit at
cache positions cache_index + arange(L), and it returns the written cache beside its output.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from models.llama.decoding import positions_of


@dataclass(frozen=True)
class LlamaConfig:
    """A Llama decoder's settings, named as transformers' LlamaConfig names them."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def rms_norm(x: jax.Array, weight: jax.Array, epsilon: float) -> jax.Array:
    """x over its root mean square (in float32, cast back to x's dtype), times the weight."""
    wide = x.astype(jnp.float32)
    normalized = wide * jax.lax.rsqrt(jnp.mean(wide * wide, axis=-1, keepdims=True) + epsilon)
    return weight * normalized.astype(x.dtype)


def rotary_angles(position_ids: jax.Array, head_dim: int, theta: float
                  ) -> tuple[jax.Array, jax.Array]:
    """cos and sin (B, L, head_dim) in float32 of each position's angles, every frequency
    twice (the halves pairing: dimension i and i + head_dim/2 turn together)."""
    inverse_frequencies = 1.0 / theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32)
                                          / head_dim)
    frequencies = position_ids.astype(jnp.float32)[..., None] * inverse_frequencies
    angles = jnp.concatenate([frequencies, frequencies], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def rotate_half(x: jax.Array) -> jax.Array:
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Heads x (B, L, heads, head_dim) turned by their positions' angles (B, L, head_dim)."""
    return x * cos[:, :, None] + rotate_half(x) * sin[:, :, None]


def repeat_kv(x: jax.Array, groups: int) -> jax.Array:
    """(B, K, kv_heads, D) -> (B, K, kv_heads * groups, D): query head h reads kv head
    h // groups, as transformers' repeat_kv."""
    return jnp.repeat(x, groups, axis=2)


def attention_allowed(query_positions: jax.Array, key_mask: jax.Array) -> jax.Array:
    """(B, 1, L, K) bool: the query at cache position q sees key k iff k <= q and
    key_mask[b, k] == 1."""
    keys = jnp.arange(key_mask.shape[-1])
    causal = keys[None, :] <= query_positions[:, None]
    return causal[None, None] & (key_mask[:, None, None, :] == 1)


def masked_scores(scores: jax.Array, allowed: jax.Array, written: int | jax.Array
                  ) -> jax.Array:
    """Attention scores (B, heads, L, K) where allowed, the dtype's least value where masked
    (a padding query that sees no key spreads evenly over the keys, as transformers' eager
    attention does), -inf at keys past `written` (which torch's cache does not hold, so that
    such a query spreads over the same keys on both sides)."""
    scores = jnp.where(allowed, scores, jnp.finfo(scores.dtype).min)
    return jnp.where(jnp.arange(scores.shape[-1]) < written, scores, -jnp.inf)


def write_cache(cache: jax.Array, new: jax.Array, index: jax.Array) -> jax.Array:
    """`cache` (B, max_length, kv_heads, D) with `new` (B, L, kv_heads, D) at `index`."""
    zero = jnp.zeros((), jnp.int32)
    return jax.lax.dynamic_update_slice(cache, new.astype(cache.dtype),
                                        (zero, index, zero, zero))


def call_defaults(attention_mask: Any, position_ids: Any, cache_index: Any, batch: int,
                  length: int, key_length: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The mask (ones over the keys), the positions (from the mask, at this call's columns)
    and the cache index (0) a call leaves out."""
    start = jnp.asarray(0 if cache_index is None else cache_index, jnp.int32)
    if attention_mask is None:
        attention_mask = jnp.ones((batch, key_length), jnp.int32)
    if position_ids is None:
        position_ids = jax.lax.dynamic_slice_in_dim(positions_of(attention_mask), start,
                                                    length, axis=1)
    return attention_mask, position_ids, start


class LlamaRMSNorm(nnx.Module):
    def __init__(self, size: int, epsilon: float, *, dtype: Any) -> None:
        self.dtype = dtype
        self.epsilon = epsilon
        self.weight = nnx.Param(jnp.ones((size,), jnp.float32))

    def __call__(self, hidden_states: jax.Array) -> jax.Array:
        return rms_norm(hidden_states, self.weight[...].astype(self.dtype), self.epsilon)


class LlamaMLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), no biases."""

    def __init__(self, config: LlamaConfig, *, dtype: Any, rngs: nnx.Rngs) -> None:
        self.dtype = dtype
        linear = partial(nnx.Linear, use_bias=False, dtype=dtype, rngs=rngs)
        self.gate_proj = linear(config.hidden_size, config.intermediate_size)
        self.up_proj = linear(config.hidden_size, config.intermediate_size)
        self.down_proj = linear(config.intermediate_size, config.hidden_size)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaAttention(nnx.Module):
    """Grouped-query self-attention with rotary positions, its mask made from the 2-D
    padding mask, optionally reading and writing a KV cache."""

    def __init__(self, config: LlamaConfig, *, dtype: Any, rngs: nnx.Rngs) -> None:
        self.config = config
        self.dtype = dtype
        heads, kv_heads, head_dim = (config.num_attention_heads, config.num_key_value_heads,
                                     config.head_dim)
        linear = partial(nnx.Linear, use_bias=False, dtype=dtype, rngs=rngs)
        self.q_proj = linear(config.hidden_size, heads * head_dim)
        self.k_proj = linear(config.hidden_size, kv_heads * head_dim)
        self.v_proj = linear(config.hidden_size, kv_heads * head_dim)
        self.o_proj = linear(heads * head_dim, config.hidden_size)

    def __call__(self, hidden_states: jax.Array, attention_mask: Any = None,
                 position_ids: Any = None, cache: Any = None, cache_index: Any = None) -> Any:
        config = self.config
        batch, length, _ = hidden_states.shape
        key_length = length if cache is None else cache[0].shape[1]
        attention_mask, position_ids, start = call_defaults(
            attention_mask, position_ids, cache_index, batch, length, key_length)
        heads, head_dim = config.num_attention_heads, config.head_dim
        queries = self.q_proj(hidden_states).reshape(batch, length, heads, head_dim)
        keys = self.k_proj(hidden_states).reshape(batch, length, -1, head_dim)
        values = self.v_proj(hidden_states).reshape(batch, length, -1, head_dim)
        cos, sin = (angle.astype(hidden_states.dtype) for angle in
                    rotary_angles(position_ids, head_dim, config.rope_theta))
        queries, keys = apply_rotary(queries, cos, sin), apply_rotary(keys, cos, sin)
        if cache is not None:
            keys, values = write_cache(cache[0], keys, start), write_cache(cache[1], values, start)
        groups = heads // config.num_key_value_heads
        scores = jnp.einsum("bqhd,bkhd->bhqk", queries, repeat_kv(keys, groups)) \
            * head_dim ** -0.5
        allowed = attention_allowed(start + jnp.arange(length), attention_mask)
        scores = masked_scores(scores, allowed, start + length)
        weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(queries.dtype)
        attended = jnp.einsum("bhqk,bkhd->bqhd", weights, repeat_kv(values, groups))
        output = self.o_proj(attended.reshape(batch, length, heads * head_dim))
        return output if cache is None else (output, (keys, values))


class LlamaDecoderLayer(nnx.Module):
    """Pre-norm attention and MLP, each added to the residual stream."""

    def __init__(self, config: LlamaConfig, *, dtype: Any, rngs: nnx.Rngs) -> None:
        self.dtype = dtype
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps,
                                            dtype=dtype)
        self.self_attn = LlamaAttention(config, dtype=dtype, rngs=rngs)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps,
                                                     dtype=dtype)
        self.mlp = LlamaMLP(config, dtype=dtype, rngs=rngs)

    def __call__(self, hidden_states: jax.Array, attention_mask: Any = None,
                 position_ids: Any = None, cache: Any = None, cache_index: Any = None) -> Any:
        attended = self.self_attn(self.input_layernorm(hidden_states),
                                  attention_mask=attention_mask, position_ids=position_ids,
                                  cache=cache, cache_index=cache_index)
        attended, written = (attended, None) if cache is None else attended
        hidden_states = hidden_states + attended
        hidden_states = hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))
        return hidden_states if cache is None else (hidden_states, written)


class LlamaModel(nnx.Module):
    """Token embeddings, the decoder layers, a final RMSNorm."""

    def __init__(self, config: LlamaConfig, *, dtype: Any, rngs: nnx.Rngs) -> None:
        self.dtype = dtype
        self.embed_tokens = nnx.Embed(config.vocab_size, config.hidden_size, dtype=dtype,
                                      rngs=rngs)
        self.layers = nnx.List([LlamaDecoderLayer(config, dtype=dtype, rngs=rngs)
                                for _ in range(config.num_hidden_layers)])
        self.norm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype)

    def __call__(self, input_ids: jax.Array, attention_mask: Any = None,
                 position_ids: Any = None, cache: Any = None, cache_index: Any = None) -> Any:
        batch, length = input_ids.shape
        key_length = length if cache is None else cache[0][0].shape[1]
        attention_mask, position_ids, start = call_defaults(
            attention_mask, position_ids, cache_index, batch, length, key_length)
        hidden_states = self.embed_tokens(input_ids)
        written = []
        for index, layer in enumerate(self.layers):
            hidden_states = layer(hidden_states, attention_mask=attention_mask,
                                  position_ids=position_ids,
                                  cache=None if cache is None else cache[index],
                                  cache_index=start)
            if cache is not None:
                hidden_states, layer_cache = hidden_states
                written.append(layer_cache)
        hidden_states = self.norm(hidden_states)
        return hidden_states if cache is None else (hidden_states, written)


class LlamaForCausalLM(nnx.Module):
    """The decoder and its untied language-model head. `dtype` is the computation dtype of
    every layer (parameters stay float32); logits come out in it, as transformers' do."""

    def __init__(self, config: LlamaConfig, *, dtype: Any = jnp.float32,
                 rngs: nnx.Rngs) -> None:
        self.config = config
        self.dtype = dtype
        self.model = LlamaModel(config, dtype=dtype, rngs=rngs)
        self.lm_head = nnx.Linear(config.hidden_size, config.vocab_size, use_bias=False,
                                  dtype=dtype, rngs=rngs)

    def __call__(self, input_ids: jax.Array, attention_mask: Any = None,
                 position_ids: Any = None, cache: Any = None, cache_index: Any = None) -> Any:
        """{"logits": (B, L, V)}, named as transformers' output names them (the pair compares
        output trees); with a cache, (logits, the cache with this call's keys and values
        written at cache_index)."""
        hidden = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            cache=cache, cache_index=cache_index)
        if cache is None:
            return {"logits": self.lm_head(hidden)}
        hidden, written = hidden
        return self.lm_head(hidden), written
