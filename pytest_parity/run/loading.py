"""Getting a registered pair ready for a case: its checkpoint, both models with its weights on
the case's device and in its dtype, and the session's cache of loaded pairs."""

from __future__ import annotations

import copy
import functools
from collections import OrderedDict
from pathlib import Path
from typing import Any

from pytest_parity import threads
from pytest_parity.checkpoint.convert import (
    checkpoint_from_torch,
    checkpoint_to_flax,
    checkpoint_to_torch,
)
from pytest_parity.checkpoint.format import Checkpoint
from pytest_parity.registry import Pair, flax_module_of
from pytest_parity.run.loaded import LoadedPair
from pytest_parity.run.sides import flax_module_in, placed_variables, torch_model_on


def checkpoint_for(pair: Pair, seed: int, cache_dir: Path) -> Checkpoint:
    """The pair's checkpoint for `seed`: its own source where it registers one (the zoo's
    seeded checkpoints), else the torch model's initialisation under torch.manual_seed(seed)."""
    if pair.checkpoint is not None:
        return pair.checkpoint(seed, cache_dir)
    import torch

    torch.manual_seed(seed)
    state = pair.torch_model().state_dict()
    return checkpoint_from_torch(state, pair, source=f"torch {torch.__version__} init, "
                                                     f"torch.manual_seed({seed})")


@functools.cache
def _meta_model(pair: Pair) -> Any:
    """The pair's torch model built once on the meta device: structure, no memory, no init."""
    import torch

    with torch.device("meta"):
        return pair.torch_model()


def _torch_model_with(pair: Pair, state: dict[str, Any]) -> Any:
    """The torch model holding `state`: a copy of the meta-device build, its tensors assigned
    from the state dict, so that the model's own random initialisation (~200 ms for ResNet-50)
    is skipped; built normally where the state dict does not cover every tensor
    (non-persistent buffers)."""
    model = copy.deepcopy(_meta_model(pair))
    model.load_state_dict(state, assign=True)
    if any(tensor.is_meta for tensor in (*model.parameters(), *model.buffers())):
        model = pair.torch_model()
        model.load_state_dict(state)
    return model


def _flax_variables(pair: Pair, checkpoint: Checkpoint, device: str, dtype: str) -> Any:
    """The checkpoint's Flax variables on the device, floating ones in `dtype`."""
    return placed_variables(checkpoint_to_flax(checkpoint, pair), device, dtype)


def load_pair(pair: Pair, checkpoint: Checkpoint, device: str, dtype: str) -> LoadedPair:
    """Both models of `pair` with the checkpoint's weights, on `device`, in `dtype`. The Flax
    side is converted and transferred in a worker thread while the torch side is built."""
    import jax
    import torch

    flax_side = threads.submit(_flax_variables, pair, checkpoint, device, dtype)
    state = {key: torch.from_numpy(value)
             for key, value in checkpoint_to_torch(checkpoint, pair).items()}
    model = torch_model_on(_torch_model_with(pair, state), device, dtype)
    flax_model = flax_module_in(flax_module_of(pair), dtype)
    return LoadedPair(pair, device, dtype, checkpoint, model, flax_model, flax_side.result(),
                      jax.jit(flax_model.apply))


class PairCache:
    """Loaded pairs by (name, device, dtype, seed), the most recent `keep` of them; one per
    session (and per xdist worker): ViT-L/16 alone holds ~2.5 GB in both frameworks."""

    def __init__(self, cache_dir: Path, keep: int = 3) -> None:
        self.cache_dir = cache_dir
        self.keep = keep
        self.loaded: OrderedDict[tuple[str, str, str, int], LoadedPair] = OrderedDict()

    def get(self, pair: Pair, device: str, dtype: str, seed: int) -> LoadedPair:
        key = (pair.name, device, dtype, seed)
        if key in self.loaded:
            self.loaded.move_to_end(key)
            return self.loaded[key]
        while len(self.loaded) >= self.keep:
            self.loaded.popitem(last=False)
        same_checkpoint = [p.checkpoint for (name, *_, s), p in self.loaded.items()
                           if (name, s) == (pair.name, seed)]
        checkpoint = (same_checkpoint[0] if same_checkpoint
                      else checkpoint_for(pair, seed, self.cache_dir))
        self.loaded[key] = load_pair(pair, checkpoint, device, dtype)
        return self.loaded[key]
