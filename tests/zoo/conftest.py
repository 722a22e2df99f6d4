"""Zoo pairs loaded from their seeded checkpoints, once per session (and per xdist worker)."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest


@dataclass
class LoadedPair:
    name: str
    torch_model: Any
    flax_model: Any
    flax_variables: Any
    checkpoint_digest: str = ""

    def torch_logits(self, images_nchw: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.torch_model(torch.from_numpy(images_nchw)).numpy()

    def flax_logits(self, images_nchw: np.ndarray, flax_model: Any = None) -> np.ndarray:
        import jax

        model = flax_model or self.flax_model
        # NCHW (torch) -> NHWC (Flax): the one place the layouts of inputs differ.
        return np.asarray(jax.jit(model.apply)(self.flax_variables,
                                               images_nchw.transpose(0, 2, 3, 1)))


@pytest.fixture(scope="session")
def zoo_pair(request):
    """`zoo_pair("resnet50")`: torchvision model and Flax model with the seeded weights."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("flax")
    from models.checkpoints import seeded_checkpoint
    from pytest_parity import registry
    from pytest_parity.convert import checkpoint_to_flax, checkpoint_to_torch

    cache_dir = request.config.cache.mkdir("parity-checkpoints")
    loaded: dict[str, LoadedPair] = {}

    def load(name: str) -> LoadedPair:
        if name not in loaded:
            pair = registry.get(name)
            checkpoint = seeded_checkpoint(pair, seed=0, cache_dir=cache_dir)
            model = pair.torch_model().eval()
            model.load_state_dict({key: torch.from_numpy(value) for key, value
                                   in checkpoint_to_torch(checkpoint, pair).items()})
            loaded[name] = LoadedPair(name, model, pair.flax_model(),
                                      checkpoint_to_flax(checkpoint, pair), checkpoint.digest())
        return loaded[name]

    return load


@pytest.fixture(scope="session")
def random_images():
    """A seeded batch of 2 ImageNet-sized images (NCHW), from numpy's frozen legacy stream."""
    return np.random.RandomState(1).normal(0.0, 1.0, (2, 3, 224, 224)).astype(np.float32)
