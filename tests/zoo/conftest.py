"""The zoo's tests run model by model, so that `parity_pair` loads each model once (its cache
keeps only a few loaded pairs)."""

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def random_images():
    """A seeded batch of 2 ImageNet-sized images (NCHW), from numpy's frozen legacy stream."""
    return np.random.RandomState(1).normal(0.0, 1.0, (2, 3, 224, 224)).astype(np.float32)


def pytest_collection_modifyitems(items):
    """Group the zoo's tests by model; other tests keep their places and order."""
    zoo_dir = Path(__file__).parent
    slots = [index for index, item in enumerate(items) if zoo_dir in Path(item.path).parents]

    def model(item):
        callspec = getattr(item, "callspec", None)
        return str(callspec.params.get("name", "")) if callspec else ""

    for slot, item in zip(slots, sorted((items[i] for i in slots), key=model), strict=True):
        items[slot] = item
