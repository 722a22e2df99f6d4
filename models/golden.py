"""The zoo's golden outputs: torchvision's logits on the real photo and on seeded inputs."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import numpy as np

from models import preprocessing
from models.checkpoints import seeded_checkpoint
from pytest_parity import registry
from pytest_parity.checkpoint import Checkpoint
from pytest_parity.golden import array_digest

CHECKPOINT_SEED = 0
RANDOM_INPUT_SHAPE = (2, 3, 224, 224)


def golden_inputs(name: str) -> dict[str, tuple[np.ndarray, str]]:
    """Each named input batch (NCHW float32) with a description of how it was made."""
    preprocess = registry.get(name).preprocess
    assert preprocess is not None, f"{name}: the zoo registers every pair with its preprocessing"
    photo = preprocess(preprocessing.photo())
    random = np.random.RandomState(1).normal(0.0, 1.0, RANDOM_INPUT_SHAPE).astype(np.float32)
    return {
        "photo": (photo, f"grace_hopper.jpg from matplotlib {version('matplotlib')}, "
                         f"Pillow {version('pillow')}; {preprocessing.describe(name)}"),
        "random": (random, f"numpy RandomState(1).normal(0, 1, {RANDOM_INPUT_SHAPE}), float32"),
    }


def compute(name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """torchvision's float32 CPU logits for each golden input, and their provenance."""
    import torch

    from pytest_parity.checkpoint import checkpoint_to_torch

    pair = registry.get(name)
    checkpoint = seeded_checkpoint(pair, CHECKPOINT_SEED)
    model = pair.torch_model().eval()
    model.load_state_dict({key: torch.from_numpy(value)
                           for key, value in checkpoint_to_torch(checkpoint, pair).items()})
    return torchvision_outputs(name, model, checkpoint)


def torchvision_outputs(name: str, model: Any, checkpoint: Checkpoint
                        ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A loaded torchvision model's float32 CPU logits for each golden input, and their
    provenance (the checkpoint's digest, each input's description and digest)."""
    import torch

    outputs, described = {}, {}
    for key, (images, description) in golden_inputs(name).items():
        with torch.no_grad():
            outputs[key] = model(torch.from_numpy(images)).numpy()
        described[key] = {"input": description, "input_digest": array_digest(images),
                          "top5": np.argsort(-outputs[key], axis=-1)[:, :5].tolist()}
    manifest = {
        "source": f"torchvision {version('torchvision')} ({type(model).__module__}."
                  f"{type(model).__name__}, the original implementation)",
        "torch": version("torch"), "device": "cpu", "dtype": "float32",
        "checkpoint": {"digest": checkpoint.digest(), "source": checkpoint.source},
        "outputs": described,
    }
    return outputs, manifest
