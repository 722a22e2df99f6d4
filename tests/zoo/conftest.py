"""Zoo pairs loaded from their seeded checkpoints, once per session (and per xdist worker)."""

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

KEEP_LOADED = 3


@dataclass
class LoadedPair:
    name: str
    torch_model: Any
    flax_model: Any
    flax_variables: Any
    checkpoint_digest: str = ""
    compiled: dict[str, Any] = field(default_factory=dict)

    def torch_logits(self, images_nchw: np.ndarray, dtype: str = "float32") -> np.ndarray:
        """Logits of the torch model (a bfloat16 copy for dtype='bfloat16'), as numpy."""
        import torch

        from pytest_parity.arrays import to_numpy

        model = self.torch_model
        if dtype == "bfloat16":
            model = copy.deepcopy(model).to(torch.bfloat16)
        with torch.no_grad():
            return to_numpy(model(torch.from_numpy(images_nchw).to(getattr(torch, dtype))))

    def flax_logits(self, images_nchw: np.ndarray, flax_model: Any = None,
                    dtype: str = "float32") -> np.ndarray:
        """Logits of the Flax model (computing and holding its weights in `dtype`)."""
        import jax
        import jax.numpy as jnp

        from pytest_parity.registry import Pair

        if flax_model is not None:  # a one-off (mutated) model: compiled for this call only
            apply = jax.jit(flax_model.clone(dtype=jnp.dtype(dtype)).apply)
        else:  # compiled once per dtype; jax reuses it for every input shape seen before
            if dtype not in self.compiled:
                self.compiled[dtype] = jax.jit(self.flax_model.clone(dtype=jnp.dtype(dtype)).apply)
            apply = self.compiled[dtype]
        variables = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), self.flax_variables)
        images = jnp.asarray(Pair.to_flax_input(images_nchw), dtype)
        return np.asarray(apply(variables, images))


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
        if name in loaded:
            loaded[name] = loaded.pop(name)  # most recently used last
        else:
            while len(loaded) >= KEEP_LOADED:  # ViT-L/16 alone holds ~2.5 GB in both frameworks
                loaded.pop(next(iter(loaded)))
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


def pytest_collection_modifyitems(items):
    """Run the zoo's tests model by model, so that each model is loaded once (the pair cache
    keeps only KEEP_LOADED models); other tests keep their places and order."""
    zoo_dir = Path(__file__).parent
    slots = [index for index, item in enumerate(items) if zoo_dir in Path(item.path).parents]

    def model(item):
        callspec = getattr(item, "callspec", None)
        return str(callspec.params.get("name", "")) if callspec else ""

    for slot, item in zip(slots, sorted((items[i] for i in slots), key=model), strict=True):
        items[slot] = item
