"""Seeded checkpoints with realistic statistics, for a zoo where no weights can be downloaded.

Every tensor is drawn from numpy's legacy `RandomState` stream, which numpy keeps frozen across
versions, so a seed gives the same bytes on every machine (and the same digest). Statistics
follow what trained networks look like, not torchvision's init: He-scaled convolutions,
1/fan_in-scaled linear layers, and every tensor that torchvision sets to a constant drawn
instead (BatchNorm weight/bias/running mean/running var, LayerNorm scale/bias, ViT's
zero-initialised head and class token): with constant ones a swapped BatchNorm scale and
variance goes unnoticed, and ViT's logits are exactly zero.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pytest_parity.registry import Pair

# Bump when the draws change: cached checkpoints carry it in their name.
GENERATOR_VERSION = 1
# The last BatchNorm of each residual branch keeps a small scale, as in trained ResNets
# (and as torchvision's zero_init_residual intends); without it the residual sum grows
# with depth and random ResNet-50 logits reach the hundreds.
RESIDUAL_BRANCH_SCALE = (0.05, 0.25)


def _state_layout(pair: Pair) -> dict[str, tuple[str, tuple[int, ...], str]]:
    """Each state-dict key's owning module class name, shape and dtype, in the model's order
    (built once on the meta device: no memory, no init)."""
    import torch

    with torch.device("meta"):
        model = pair.torch_model()
    modules = dict(model.named_modules())
    return {key: (type(modules.get(key.rpartition(".")[0], model)).__name__,
                  tuple(value.shape), str(value.dtype).removeprefix("torch."))
            for key, value in model.state_dict().items()}


def _ends_residual_branch(key: str, has_bn3: bool) -> bool:
    """torchvision ResNet blocks: bn3 ends a bottleneck's branch, bn2 a basic block's."""
    return key.startswith("layer") and (".bn3." in key if has_bn3 else ".bn2." in key)


def _draw(key: str, kind: str, shape: tuple[int, ...], rng: np.random.RandomState,
          has_bn3: bool) -> np.ndarray:
    name = key.rpartition(".")[2]
    if name == "num_batches_tracked":
        return np.zeros(shape, np.int64)
    if kind.startswith("BatchNorm"):
        if name == "weight":
            low, high = (RESIDUAL_BRANCH_SCALE if _ends_residual_branch(key, has_bn3)
                         else (0.6, 1.2))
            return rng.uniform(low, high, shape)
        if name == "running_var":
            return rng.uniform(0.5, 1.5, shape)
        return rng.normal(0.0, 0.1, shape)  # bias, running_mean
    if kind == "LayerNorm":
        return rng.uniform(0.8, 1.2, shape) if name == "weight" else rng.normal(0.0, 0.05, shape)
    if name in ("class_token", "pos_embedding"):
        return rng.normal(0.0, 0.02, shape)
    if "bias" in name:
        return rng.normal(0.0, 0.02, shape)
    fan_in = int(np.prod(shape[1:]))
    gain = 2.0 if kind == "Conv2d" else 1.0  # He for ReLU convolutions, LeCun for the rest
    return rng.normal(0.0, np.sqrt(gain / fan_in), shape)


def _drawn(pair: Pair, seed: int) -> Iterator[tuple[str, np.ndarray]]:
    """Each state-dict key and its tensor (numpy, float32 or int64), in the model's order."""
    layout = _state_layout(pair)
    has_bn3 = any(".bn3." in key for key in layout)
    rng = np.random.RandomState(seed)
    for key, (kind, shape, dtype) in layout.items():  # the model's order is part of the stream
        value = _draw(key, kind, shape, rng, has_bn3)
        yield key, np.asarray(value, dtype=np.int64 if dtype == "int64" else np.float32)


def seeded_state_dict(pair: Pair, seed: int = 0) -> dict[str, np.ndarray]:
    """The pair's torch state dict (numpy, float32), drawn deterministically from `seed`."""
    return dict(_drawn(pair, seed))


def first_drawn(pair: Pair, seed: int = 0) -> dict[str, np.ndarray]:
    """The first tensor of the seed's state dict alone: a fingerprint of the seed's
    checkpoint, drawn without drawing the rest."""
    return dict([next(_drawn(pair, seed))])
