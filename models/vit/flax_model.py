"""The Vision Transformer family in Flax linen, built to match torchvision's ViT exactly.

Inputs are NHWC. Submodule names follow the canonical tree (`encoder/layer0/attention/query`),
so the Flax variables *are* the canonical checkpoint. torchvision conventions kept: pre-norm
blocks with LayerNorm epsilon 1e-6, exact (erf) GELU, a class token prepended before the
position embedding is added, attention logits scaled by 1/sqrt(head_dim), the head reading
the class token after the final LayerNorm; in low precision, attention computed in float32
as torch's kernel does (models/vit/attention.py).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from models.vit.attention import attention_in_float32

LAYER_NORM_EPSILON = 1e-6


class MlpBlock(nn.Module):
    """Linear, exact GELU, Linear (torchvision's MLPBlock: keys mlp.0 and mlp.3)."""

    mlp_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = nn.gelu(nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1")(x), approximate=False)
        return nn.Dense(x.shape[-1], dtype=self.dtype, name="fc2")(y)


class EncoderBlock(nn.Module):
    """Pre-norm self-attention and MLP, each with a residual connection."""

    num_heads: int
    mlp_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        norm = partial(nn.LayerNorm, epsilon=LAYER_NORM_EPSILON, dtype=self.dtype)
        y = norm(name="ln_1")(x)
        y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dtype=self.dtype,
                                            deterministic=True,
                                            attention_fn=attention_in_float32,
                                            name="attention")(y, y)
        x = x + y
        return x + MlpBlock(self.mlp_dim, self.dtype, name="mlp")(norm(name="ln_2")(x))


class Encoder(nn.Module):
    """Position embedding, the blocks (layer0, layer1, ...), a final LayerNorm."""

    num_layers: int
    num_heads: int
    mlp_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        position = self.param("pos_embedding", nn.initializers.normal(stddev=0.02),
                              (1, x.shape[1], x.shape[2]))
        x = x + position.astype(self.dtype)
        for index in range(self.num_layers):
            x = EncoderBlock(self.num_heads, self.mlp_dim, self.dtype, name=f"layer{index}")(x)
        return nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, dtype=self.dtype, name="ln")(x)


class VisionTransformer(nn.Module):
    """A torchvision-compatible ViT; configurations are the partials below."""

    patch_size: int
    num_layers: int
    num_heads: int
    hidden_dim: int
    mlp_dim: int
    num_classes: int = 1000
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        patch = (self.patch_size, self.patch_size)
        x = nn.Conv(self.hidden_dim, patch, patch, padding="VALID", dtype=self.dtype,
                    name="conv_proj")(x)
        batch, height, width, channels = x.shape
        x = x.reshape(batch, height * width, channels)  # row-major, as torch's flatten(2)
        class_token = self.param("class_token", nn.initializers.zeros, (1, 1, channels))
        x = jnp.concatenate([jnp.broadcast_to(class_token.astype(x.dtype), (batch, 1, channels)),
                             x], axis=1)
        x = Encoder(self.num_layers, self.num_heads, self.mlp_dim, self.dtype, name="encoder")(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x[:, 0])


ViT_Ti_16 = partial(VisionTransformer, patch_size=16, num_layers=12, num_heads=3,
                    hidden_dim=192, mlp_dim=768)
ViT_B_16 = partial(VisionTransformer, patch_size=16, num_layers=12, num_heads=12,
                   hidden_dim=768, mlp_dim=3072)
ViT_B_32 = partial(VisionTransformer, patch_size=32, num_layers=12, num_heads=12,
                   hidden_dim=768, mlp_dim=3072)
ViT_L_16 = partial(VisionTransformer, patch_size=16, num_layers=24, num_heads=16,
                   hidden_dim=1024, mlp_dim=4096)
