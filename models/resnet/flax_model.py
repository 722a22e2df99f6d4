"""The ResNet family in Flax linen, built to match torchvision's ResNet exactly.

Inputs are NHWC. Submodule names follow the canonical tree (`layer1/block0/conv1/kernel`,
`bn1/mean` in `batch_stats`), so the Flax variables *are* the canonical checkpoint.
torchvision conventions kept: BatchNorm epsilon 1e-5 and momentum 0.1 (Flax counts momentum
the other way: 0.9), the stride on the 3x3 convolution of a bottleneck (ResNet v1.5), a
projection shortcut wherever the shape changes, max pooling padded with -inf; BatchNorm
computes as torch's kernel does, in low precision and in training mode
(models/resnet/batch_norm.py).

Training mode, as torch's `model.train()`: `logits, {"batch_stats": updated} =
module.apply(variables, x, train=True, mutable=["batch_stats"])`; each BatchNorm normalises
by its batch and updates its running statistics as torch's does.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from models.resnet.batch_norm import BatchNorm

TORCH_BATCH_NORM_MOMENTUM = 0.1


def _conv(features: int, kernel: int, stride: int, name: str, dtype: Any) -> nn.Conv:
    pad = kernel // 2
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding=((pad, pad), (pad, pad)),
                   use_bias=False, dtype=dtype, name=name)


class Downsample(nn.Module):
    """The projection shortcut: a strided 1x1 convolution and a BatchNorm."""

    features: int
    stride: int
    norm: Callable[..., nn.Module]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = _conv(self.features, 1, self.stride, "conv", self.dtype)(x)
        return self.norm(name="bn")(x)


class ResidualBlock(nn.Module):
    """What both block kinds share: their settings, and the shortcut added to the branch."""

    planes: int
    stride: int
    norm: Callable[..., nn.Module]
    dtype: Any = jnp.float32
    expansion: ClassVar[int] = 1


def _add_shortcut(block: ResidualBlock, x: jnp.ndarray, branch: jnp.ndarray) -> jnp.ndarray:
    """relu(shortcut(x) + branch); the shortcut projects wherever the shape changes.

    Called from a block's compact __call__, so the Downsample is that block's submodule.
    """
    out = block.planes * block.expansion
    if block.stride != 1 or x.shape[-1] != out:
        x = Downsample(out, block.stride, block.norm, block.dtype, name="downsample")(x)
    return nn.relu(x + branch)


class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions (ResNet-18/34)."""

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = nn.relu(self.norm(name="bn1")(_conv(self.planes, 3, self.stride, "conv1",
                                                self.dtype)(x)))
        y = self.norm(name="bn2")(_conv(self.planes, 3, 1, "conv2", self.dtype)(y))
        return _add_shortcut(self, x, y)


class Bottleneck(ResidualBlock):
    """1x1 reduce, strided 3x3, 1x1 expand by 4 (ResNet-50/101/152, torchvision v1.5)."""

    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = nn.relu(self.norm(name="bn1")(_conv(self.planes, 1, 1, "conv1", self.dtype)(x)))
        y = nn.relu(self.norm(name="bn2")(_conv(self.planes, 3, self.stride, "conv2",
                                                self.dtype)(y)))
        y = self.norm(name="bn3")(_conv(self.planes * self.expansion, 1, 1, "conv3",
                                        self.dtype)(y))
        return _add_shortcut(self, x, y)


class Stage(nn.Module):
    """torchvision's `layer{i}`: blocks named block0, block1, ..."""

    block_cls: Any
    planes: int
    blocks: int
    stride: int
    norm: Callable[..., nn.Module]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for index in range(self.blocks):
            x = self.block_cls(self.planes, self.stride if index == 0 else 1, self.norm,
                               self.dtype, name=f"block{index}")(x)
        return x


class ResNet(nn.Module):
    """A torchvision-compatible ResNet; depths are the partials below."""

    stage_sizes: tuple[int, ...]
    block_cls: Any
    num_classes: int = 1000
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        norm = partial(BatchNorm, use_running_average=not train,
                       momentum=1.0 - TORCH_BATCH_NORM_MOMENTUM, epsilon=1e-5, dtype=self.dtype)
        x = nn.relu(norm(name="bn1")(_conv(64, 7, 2, "conv1", self.dtype)(x)))
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for index, blocks in enumerate(self.stage_sizes):
            x = Stage(self.block_cls, 64 * 2**index, blocks, 1 if index == 0 else 2, norm,
                      self.dtype, name=f"layer{index + 1}")(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)


ResNet18 = partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock)
ResNet34 = partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock)
ResNet50 = partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck)
ResNet101 = partial(ResNet, stage_sizes=(3, 4, 23, 3), block_cls=Bottleneck)
ResNet152 = partial(ResNet, stage_sizes=(3, 8, 36, 3), block_cls=Bottleneck)
