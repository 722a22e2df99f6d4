"""The ResNet family in Flax NNX: the Linen port (flax_model.py), layer for layer.

Attributes carry the Linen port's submodule names (`layer1`, `block0`, `downsample/conv`), so
the NNX state has the Linen variables' paths (`layer1/block0/conv1/kernel` an nnx.Param,
`bn1/mean` an nnx.BatchStat) and one mapping, resnet_mapping, serves both ports. The same
torchvision conventions and the same operations in the same order as the Linen port. Built for
inference: BatchNorm reads its running statistics (`model.train()` switches that off).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import jax.numpy as jnp
from flax import nnx

from models.resnet.batch_norm import NNXBatchNorm
from models.resnet.flax_model import TORCH_BATCH_NORM_MOMENTUM

Conv = Callable[[int, int, int, int], nnx.Conv]  # (in, out, kernel, stride) -> layer
Norm = Callable[[int], nnx.BatchNorm]  # features -> layer


def _conv(in_features: int, features: int, kernel: int, stride: int, *, dtype: Any,
          rngs: nnx.Rngs) -> nnx.Conv:
    pad = kernel // 2
    return nnx.Conv(in_features, features, (kernel, kernel), (stride, stride),
                    padding=((pad, pad), (pad, pad)), use_bias=False, dtype=dtype, rngs=rngs)


class Downsample(nnx.Module):
    """The projection shortcut: a strided 1x1 convolution and a BatchNorm."""

    def __init__(self, in_features: int, features: int, stride: int, conv: Conv,
                 norm: Norm) -> None:
        self.conv = conv(in_features, features, 1, stride)
        self.bn = norm(features)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.bn(self.conv(x))


class ResidualBlock(nnx.Module):
    """What both block kinds share: the shortcut, projected wherever the shape changes, added
    to the branch."""

    expansion: ClassVar[int] = 1

    def __init__(self, in_features: int, planes: int, stride: int, conv: Conv,
                 norm: Norm) -> None:
        out = planes * self.expansion
        self.downsample = (Downsample(in_features, out, stride, conv, norm)
                           if stride != 1 or in_features != out else None)

    def add_shortcut(self, x: jnp.ndarray, branch: jnp.ndarray) -> jnp.ndarray:
        if self.downsample is not None:
            x = self.downsample(x)
        return nnx.relu(x + branch)


class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions (ResNet-18/34)."""

    def __init__(self, in_features: int, planes: int, stride: int, conv: Conv,
                 norm: Norm) -> None:
        super().__init__(in_features, planes, stride, conv, norm)
        self.conv1 = conv(in_features, planes, 3, stride)
        self.bn1 = norm(planes)
        self.conv2 = conv(planes, planes, 3, 1)
        self.bn2 = norm(planes)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.add_shortcut(x, y)


class Bottleneck(ResidualBlock):
    """1x1 reduce, strided 3x3, 1x1 expand by 4 (ResNet-50/101/152, torchvision v1.5)."""

    expansion: ClassVar[int] = 4

    def __init__(self, in_features: int, planes: int, stride: int, conv: Conv,
                 norm: Norm) -> None:
        super().__init__(in_features, planes, stride, conv, norm)
        self.conv1 = conv(in_features, planes, 1, 1)
        self.bn1 = norm(planes)
        self.conv2 = conv(planes, planes, 3, stride)
        self.bn2 = norm(planes)
        self.conv3 = conv(planes, planes * self.expansion, 1, 1)
        self.bn3 = norm(planes * self.expansion)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = nnx.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.add_shortcut(x, y)


class Stage(nnx.Module):
    """torchvision's `layer{i}`: blocks as attributes block0, block1, ... (the Linen names;
    an nnx.List would put them at blocks/0, blocks/1)."""

    def __init__(self, block_cls: type[ResidualBlock], in_features: int, planes: int,
                 blocks: int, stride: int, conv: Conv, norm: Norm) -> None:
        self.blocks = blocks
        for index in range(blocks):
            setattr(self, f"block{index}", block_cls(in_features, planes,
                                                     stride if index == 0 else 1, conv, norm))
            in_features = planes * block_cls.expansion

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for index in range(self.blocks):
            x = getattr(self, f"block{index}")(x)
        return x


class ResNet(nnx.Module):
    """A torchvision-compatible ResNet; depths are the partials below. `dtype` is the
    computation dtype of every layer (parameters stay float32)."""

    def __init__(self, stage_sizes: tuple[int, ...], block_cls: type[ResidualBlock], *,
                 num_classes: int = 1000, dtype: Any = jnp.float32, rngs: nnx.Rngs) -> None:
        self.dtype = dtype
        conv = partial(_conv, dtype=dtype, rngs=rngs)
        norm = partial(NNXBatchNorm, use_running_average=True,
                       momentum=1.0 - TORCH_BATCH_NORM_MOMENTUM, epsilon=1e-5, dtype=dtype,
                       rngs=rngs)
        self.conv1 = conv(3, 64, 7, 2)
        self.bn1 = norm(64)
        self.stages = len(stage_sizes)
        features = 64
        for index, blocks in enumerate(stage_sizes):
            setattr(self, f"layer{index + 1}", Stage(block_cls, features, 64 * 2**index, blocks,
                                                     1 if index == 0 else 2, conv, norm))
            features = 64 * 2**index * block_cls.expansion
        self.fc = nnx.Linear(features, num_classes, dtype=dtype, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = nnx.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for index in range(self.stages):
            x = getattr(self, f"layer{index + 1}")(x)
        x = jnp.mean(x, axis=(1, 2))
        return self.fc(x)


ResNet18 = partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock)
ResNet34 = partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock)
ResNet50 = partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck)
ResNet101 = partial(ResNet, stage_sizes=(3, 4, 23, 3), block_cls=Bottleneck)
ResNet152 = partial(ResNet, stage_sizes=(3, 8, 36, 3), block_cls=Bottleneck)
