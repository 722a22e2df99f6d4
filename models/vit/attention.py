"""Attention as torch computes it for torchvision's ViT, shared by the Linen and NNX ports.

torchvision's encoder calls `nn.MultiheadAttention(..., need_weights=False)`, which in
inference runs `scaled_dot_product_attention`: on CPU its kernel keeps the logits, the
softmax and the weighted sum of the values in float32 and rounds only the result to bfloat16.
Flax's attention computes in the inputs' dtype: in bfloat16 it rounds the logits, the
softmax's exponentials and sum, and the weights, each to bfloat16. So the queries, keys and
values (projected, and rounded, in the computation dtype, as torch's are) are attended here in
float32, and the result is rounded once; in float32 nothing changes. In float64 (the budget's
reference run) they are attended in float64: attended in float32 there, the port's float64
run was no reference (its ViT-Ti 3-AdamW-step reference stood 1.1e-3 from torch's float64 in
one patch-embedding weight, and 3 of 50 seeds failed a correct port, margins 1.02-1.62).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def attention_in_float32(query: jax.Array, key: jax.Array, value: jax.Array, *,
                         mask: jax.Array | None = None, dropout_rate: float = 0.0,
                         dtype: Any = None, precision: Any = None, **_: Any) -> jax.Array:
    """softmax(query . key / sqrt(head_dim)) . value over (batch, length, heads, head_dim)
    inputs, in float32 (float64 for float64 inputs), rounded to `dtype` (the query's where
    None) once. No dropout (a ViT in inference has none; the dropout RNG and the other
    keywords go unused)."""
    if dropout_rate:
        raise ValueError(f"attention_in_float32: dropout_rate={dropout_rate}; it has none")
    f32 = jnp.promote_types(query.dtype, jnp.float32)
    scaled = query.astype(f32) / jnp.sqrt(jnp.asarray(query.shape[-1], f32))
    logits = jnp.einsum("...qhd,...khd->...hqk", scaled, key.astype(f32), precision=precision)
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(f32).min)
    weights = jax.nn.softmax(logits, axis=-1)
    attended = jnp.einsum("...hqk,...khd->...qhd", weights, value.astype(f32),
                          precision=precision)
    return attended.astype(dtype or query.dtype)
