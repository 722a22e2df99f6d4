"""Getting a registered pair ready for a case: its checkpoint, both models with its weights on
the case's device and in its dtype, and the session's cache of loaded pairs."""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pytest_parity import progress
from pytest_parity.calls import flax_called_with, plain_outputs, torch_called_with
from pytest_parity.checkpoint import (
    Checkpoint,
    checkpoint_from_torch,
    checkpoint_to_flax,
    checkpoint_to_torch,
    meta_model,
    shape_cache,
)
from pytest_parity.registry import Pair, flax_module_of
from pytest_parity.run.loaded import LoadedPair
from pytest_parity.run.sides import flax_module_in, placed_variables, run_torch, torch_model_on


def checkpoint_for(pair: Pair, seed: int, cache_dir: Path) -> Checkpoint:
    """The pair's checkpoint for `seed`: its own source where it registers one (the zoo's
    seeded checkpoints), else the torch model's initialisation under torch.manual_seed(seed)."""
    if pair.checkpoint is not None:
        return pair.checkpoint(seed, cache_dir)
    import torch

    with progress.timed(f"{pair.name}: checkpoint drawn from torch's init (seed {seed})"):
        torch.manual_seed(seed)
        state = pair.torch_model().state_dict()
        return checkpoint_from_torch(state, pair, source=f"torch {torch.__version__} init, "
                                                         f"torch.manual_seed({seed})")


Result = TypeVar("Result")


def _timed(seconds: dict[str, float], step: str, function: Callable[..., Result],
           *args: Any) -> Result:
    started = time.perf_counter()
    result = function(*args)
    seconds[step] = time.perf_counter() - started
    return result


def _torch_model_with(pair: Pair, state: dict[str, Any]) -> Any:
    """The torch model holding `state`: a copy of the meta-device build, its tensors assigned
    from the state dict, so that the model's own random initialisation (~200 ms for ResNet-50)
    is skipped; built normally where the state dict does not cover every tensor
    (non-persistent buffers)."""
    model = copy.deepcopy(meta_model(pair))
    model.load_state_dict(state, assign=True)
    if any(tensor.is_meta for tensor in (*model.parameters(), *model.buffers())):
        model = pair.torch_model()
        model.load_state_dict(state)
    return model


def load_pair(pair: Pair, checkpoint: Checkpoint, device: str, dtype: str) -> LoadedPair:
    """Both models of `pair` with the checkpoint's weights, on `device`, in `dtype`; each
    step's seconds in `ready_seconds` ("torch state", "torch model", "flax variables",
    "placement"). In sequence: both sides hold the GIL for most of their work, and a worker
    thread for the Flax side made ViT-B/16 slower (0.83 s against 0.57 s)."""
    import jax
    import torch

    seconds: dict[str, float] = {}
    state = _timed(seconds, "torch state", lambda: {
        key: torch.from_numpy(value)
        for key, value in checkpoint_to_torch(checkpoint, pair).items()})
    model = _timed(seconds, "torch model", lambda: torch_called_with(
        _torch_model_with(pair, state), pair.torch_call))
    variables = _timed(seconds, "flax variables", checkpoint_to_flax, checkpoint, pair)
    flax_module = flax_module_of(pair)
    if pair.outputs == "common":
        keep = _outputs_both_return(pair, model, flax_module, variables)
        model = torch_called_with(model, pair.torch_call, keep)
        flax_module = flax_called_with(flax_module, pair.flax_call, pair.output_layouts(), keep)
    model = torch_model_on(model, device, dtype)
    placed = _timed(seconds, "placement", placed_variables, variables, device, dtype)
    flax_model = flax_module_in(flax_module, dtype)
    return LoadedPair(pair, device, dtype, checkpoint, model, flax_model, placed,
                      jax.jit(flax_model.apply), ready_seconds=seconds)


def _outputs_both_return(pair: Pair, torch_model: Any, flax_module: Any, variables: Any
                         ) -> frozenset[str] | None:
    """The names of the outputs both sides return (`Pair(outputs="common")`), from one torch
    forward on the pair's example inputs and the Flax side's output shapes (jax.eval_shape);
    None where the outputs are not named. Every check of the pair then sees only these."""
    import jax

    torch_out = run_torch(torch_model, pair.example_inputs(0), "cpu", "float32")
    args, kwargs = pair.flax_examples()
    flax_out = plain_outputs(jax.eval_shape(
        lambda v, a, k: flax_module.apply(v, *a, **k), variables, tuple(args), dict(kwargs)))
    if not (isinstance(torch_out, dict) and isinstance(flax_out, dict)):
        return None
    return frozenset(torch_out) & frozenset(flax_out)


class PairCache:
    """Loaded pairs by (name, device, dtype, seed), the most recent `keep` of them; one per
    session (and per xdist worker). One by default: a pair is ready again in 0.3-0.5 s
    (ResNet-50, ViT-B/16), while each one held costs its weights in both frameworks (ViT-B/16
    in bfloat16 with its float32 reference ~1 GB); holding three took the main job's peak to
    4.1 GB. A model's next case in another dtype reuses the checkpoint of the pair it
    replaces (tests/zoo/conftest.py runs a model's cases one after the other)."""

    def __init__(self, cache_dir: Path, keep: int = 1) -> None:
        self.cache_dir = cache_dir
        shape_cache.keep_in(cache_dir / "flax-shapes")
        self.keep = keep
        # By the Pair itself (compared by identity): two unregistered pairs may share a name.
        self.loaded: OrderedDict[tuple[Pair, str, str, int], LoadedPair] = OrderedDict()

    def get(self, pair: Pair, device: str, dtype: str, seed: int) -> LoadedPair:
        key = (pair, device, dtype, seed)
        if key in self.loaded:
            self.loaded.move_to_end(key)
            return self.loaded[key]
        same_checkpoint = [p.checkpoint for (other, *_, s), p in self.loaded.items()
                           if other is pair and s == seed]
        while len(self.loaded) >= self.keep:  # freed before the next pair takes its memory
            self.loaded.popitem(last=False)
        checkpoint = (same_checkpoint[0] if same_checkpoint
                      else checkpoint_for(pair, seed, self.cache_dir))
        with progress.timed(f"{pair.name}: both models ready in {dtype} on {device}"):
            self.loaded[key] = load_pair(pair, checkpoint, device, dtype)
        return self.loaded[key]
