"""The Vision Transformer family in Flax NNX: the Linen port (flax_model.py), layer for layer.

Attributes carry the Linen port's submodule names (`encoder/layer0/attention/query`), so the
NNX state has the Linen variables' paths and one mapping, vit_mapping, serves both ports. The
same torchvision conventions and the same operations in the same order as the Linen port,
attention included (models/vit/attention.py, in place of NNX's default attention_fn,
jax.nn.dot_product_attention, which rounds otherwise). NNX builds its parameters when
constructed, so the position embedding's length comes from `image_size` (224) and the patch
size.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax.numpy as jnp
from flax import nnx

from models.vit.attention import attention_in_float32
from models.vit.flax_model import LAYER_NORM_EPSILON


class MlpBlock(nnx.Module):
    """Linear, exact GELU, Linear (torchvision's MLPBlock: keys mlp.0 and mlp.3)."""

    def __init__(self, hidden_dim: int, mlp_dim: int, *, dtype: Any, rngs: nnx.Rngs) -> None:
        self.fc1 = nnx.Linear(hidden_dim, mlp_dim, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(mlp_dim, hidden_dim, dtype=dtype, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.fc2(nnx.gelu(self.fc1(x), approximate=False))


class EncoderBlock(nnx.Module):
    """Pre-norm self-attention and MLP, each with a residual connection."""

    def __init__(self, hidden_dim: int, num_heads: int, mlp_dim: int, *, dtype: Any,
                 rngs: nnx.Rngs) -> None:
        norm = partial(nnx.LayerNorm, hidden_dim, epsilon=LAYER_NORM_EPSILON, dtype=dtype,
                       rngs=rngs)
        self.ln_1 = norm()
        # keep_rngs=False: deterministic, so no RNG state beside the Linen port's variables.
        self.attention = nnx.MultiHeadAttention(
            num_heads, hidden_dim, dtype=dtype, deterministic=True, decode=False,
            attention_fn=attention_in_float32, keep_rngs=False, rngs=rngs)
        self.ln_2 = norm()
        self.mlp = MlpBlock(hidden_dim, mlp_dim, dtype=dtype, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = self.ln_1(x)
        y = self.attention(y, y)
        x = x + y
        return x + self.mlp(self.ln_2(x))


class Encoder(nnx.Module):
    """Position embedding, the blocks (attributes layer0, layer1, ...), a final LayerNorm."""

    def __init__(self, length: int, hidden_dim: int, num_layers: int, num_heads: int,
                 mlp_dim: int, *, dtype: Any, rngs: nnx.Rngs) -> None:
        self.dtype = dtype
        self.pos_embedding = nnx.Param(nnx.initializers.normal(stddev=0.02)(
            rngs.params(), (1, length, hidden_dim), jnp.float32))
        self.num_layers = num_layers
        for index in range(num_layers):
            setattr(self, f"layer{index}", EncoderBlock(hidden_dim, num_heads, mlp_dim,
                                                        dtype=dtype, rngs=rngs))
        self.ln = nnx.LayerNorm(hidden_dim, epsilon=LAYER_NORM_EPSILON, dtype=dtype, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = x + self.pos_embedding[...].astype(self.dtype)
        for index in range(self.num_layers):
            x = getattr(self, f"layer{index}")(x)
        return self.ln(x)


class VisionTransformer(nnx.Module):
    """A torchvision-compatible ViT; configurations are the partials below. `dtype` is the
    computation dtype of every layer (parameters stay float32)."""

    def __init__(self, patch_size: int, num_layers: int, num_heads: int, hidden_dim: int,
                 mlp_dim: int, *, num_classes: int = 1000, image_size: int = 224,
                 dtype: Any = jnp.float32, rngs: nnx.Rngs) -> None:
        self.dtype = dtype
        patch = (patch_size, patch_size)
        self.conv_proj = nnx.Conv(3, hidden_dim, patch, patch, padding="VALID", dtype=dtype,
                                  rngs=rngs)
        self.class_token = nnx.Param(jnp.zeros((1, 1, hidden_dim), jnp.float32))
        length = (image_size // patch_size) ** 2 + 1  # the patches and the class token
        self.encoder = Encoder(length, hidden_dim, num_layers, num_heads, mlp_dim, dtype=dtype,
                               rngs=rngs)
        self.head = nnx.Linear(hidden_dim, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = self.conv_proj(x)
        batch, height, width, channels = x.shape
        x = x.reshape(batch, height * width, channels)  # row-major, as torch's flatten(2)
        class_token = self.class_token[...]
        x = jnp.concatenate([jnp.broadcast_to(class_token.astype(x.dtype), (batch, 1, channels)),
                             x], axis=1)
        x = self.encoder(x)
        return self.head(x[:, 0])


ViT_Ti_16 = partial(VisionTransformer, patch_size=16, num_layers=12, num_heads=3,
                    hidden_dim=192, mlp_dim=768)
ViT_B_16 = partial(VisionTransformer, patch_size=16, num_layers=12, num_heads=12,
                   hidden_dim=768, mlp_dim=3072)
ViT_B_32 = partial(VisionTransformer, patch_size=32, num_layers=12, num_heads=12,
                   hidden_dim=768, mlp_dim=3072)
ViT_L_16 = partial(VisionTransformer, patch_size=16, num_layers=24, num_heads=16,
                   hidden_dim=1024, mlp_dim=4096)
