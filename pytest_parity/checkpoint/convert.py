"""Checkpoints to and from each framework, checked against the pair's models on every step.

torch state dicts are checked against the torch model's keys and shapes (built on the meta
device, so for free); Flax variables against the Flax module's structure (`jax.eval_shape`).
Every problem is listed at once, naming the file (or `<memory>`) and the key.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping as MappingType
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from pytest_parity.arrays import to_numpy, torch_tensor_problem
from pytest_parity.checkpoint import shape_cache
from pytest_parity.checkpoint.format import Checkpoint
from pytest_parity.checkpoint.verify import TensorSpec, verify
from pytest_parity.errors import CheckpointError
from pytest_parity.mapping import MappingError, flatten, unflatten
from pytest_parity.registry import Pair, flax_module_of

MEMORY = "<memory>"
Result = TypeVar("Result")


@cache
def meta_model(pair: Pair) -> Any:
    """The pair's torch model built once on the meta device (its shapes, no memory); building
    it costs ~0.3 s for ResNet-50 (torchvision's init runs, on meta tensors), once."""
    from pytest_parity.checkpoint.torch_files import meta_build

    return meta_build(pair.torch_model)


@cache
def _torch_shapes(pair: Pair) -> dict[str, tuple[tuple[int, ...], str]]:
    from pytest_parity.checkpoint.torch_files import expected_state_shapes

    return expected_state_shapes(meta_model(pair))


def flax_spec(pair: Pair) -> dict[str, TensorSpec]:
    """The canonical tensors the pair's Flax module holds, from `jax.eval_shape` of its init
    (once per process; kept on disk between runs where shape_cache.keep_in says where)."""
    if pair not in _flax_specs:
        from pytest_parity.checkpoint.flax_variables import canonical_spec, expected_variables

        args, kwargs = pair.flax_examples()
        module = flax_module_of(pair)
        shapes = shape_cache.cached_shapes(pair, module, tuple(args), dict(kwargs), lambda: (
            expected_variables(module, args, kwargs,
                               owner=f"pair {pair.name!r} ({pair.describe_inputs()})")))
        _flax_specs[pair] = canonical_spec(pair.mapping, shapes)
    return _flax_specs[pair]


_flax_specs: dict[Pair, dict[str, TensorSpec]] = {}


def forget_models() -> None:
    """Empty this process's caches of pair structures (meta-device builds, shapes, specs), as
    a fresh process has them: the pair-ready benchmark times its first call with it."""
    for cached in (meta_model, _torch_shapes, _unsaved_buffers):
        cached.cache_clear()
    _flax_specs.clear()


def _verify_for_flax(checkpoint: Checkpoint, pair: Pair, path: str | Path) -> None:
    """verify() against the Flax module's spec; a failure against shapes kept on disk is
    checked again against freshly traced ones before it is reported."""
    try:
        verify(checkpoint, flax_spec(pair), path)
    except CheckpointError:
        if not shape_cache.forget(pair):
            raise
        del _flax_specs[pair]
        verify(checkpoint, flax_spec(pair), path)


@cache
def _unsaved_buffers(pair: Pair) -> set[str]:
    from pytest_parity.checkpoint.torch_files import unsaved_buffers

    return unsaved_buffers(meta_model(pair))


def stale_keys(state: MappingType[str, Any], pair: Pair) -> list[str]:
    """The keys of a torch state dict that the pair's model does not save, which a conversion
    leaves out: buffers the model keeps unsaved (a real checkpoint written by an older version
    of the model may hold them) and keys its mapping ignores (`Mapping.ignored`)."""
    unsaved, ignored = _unsaved_buffers(pair), set(pair.mapping.ignored_keys(state))
    return [key for key in state if key in unsaved or key in ignored]


def check_torch_state(state: MappingType[str, np.ndarray], pair: Pair,
                      path: str | Path = MEMORY, *, complete: bool = True) -> None:
    """Compare a torch state dict with the pair's torch model: keys, shapes, dtypes.

    With `complete=False` (a selection of keys) absent keys are not reported.

    Raises:
        CheckpointError: every missing, unexpected, misshaped or mistyped key.
    """
    expected = _torch_shapes(pair)
    problems = [f"{key}: missing (expected {shape} {dtype})"
                for key, (shape, dtype) in expected.items() if complete and key not in state]
    problems += [f"{key}: unexpected key (shape {tuple(np.shape(state[key]))})"
                 for key in state if key not in expected]
    for key, (shape, dtype) in expected.items():
        if key in state and tuple(state[key].shape) != shape:
            problems.append(f"{key}: shape {tuple(state[key].shape)} where {shape} was expected "
                            f"(torch layout of {pair.name})")
        elif key in state and str(state[key].dtype) != dtype and dtype != "int64":
            problems.append(f"{key}: dtype {state[key].dtype} where {dtype} was expected")
    if problems:
        raise CheckpointError(path, problems)


def _mapped(path: str | Path, convert: Callable[[], Result]) -> Result:
    """convert(), its MappingError (a key no rule accounts for) naming the file."""
    try:
        return convert()
    except MappingError as error:
        raise CheckpointError(path, [error.message]) from None


def checkpoint_from_torch(state: MappingType[str, Any], pair: Pair, *, source: str = "torch",
                          path: str | Path = MEMORY, complete: bool = True) -> Checkpoint:
    """A canonical checkpoint from a torch state dict (tensors or numpy arrays); keys the
    model does not save (`stale_keys`) are left out.

    Raises:
        CheckpointError: tensors numpy cannot hold (sparse, quantized, meta, float8...), and
            every missing, unexpected, misshaped or mistyped key.
    """
    unusable = [f"{key}: {torch_tensor_problem(value)}" for key, value in state.items()
                if torch_tensor_problem(value)]
    if unusable:
        raise CheckpointError(path, unusable)
    stale = set(stale_keys(state, pair))
    arrays = {key: to_numpy(value) for key, value in state.items() if key not in stale}
    check_torch_state(arrays, pair, path, complete=complete)
    canonical, layouts = _mapped(path, lambda: pair.mapping.torch_to_canonical(arrays))
    return Checkpoint(pair.name, canonical, layouts, source)


def checkpoint_to_torch(checkpoint: Checkpoint, pair: Pair, path: str | Path = MEMORY, *,
                        complete: bool = True) -> dict[str, np.ndarray]:
    """A torch state dict (numpy arrays) from a canonical checkpoint, checked against the model.

    Buffers only torch keeps (rules without a Flax collection, e.g. BatchNorm's
    `num_batches_tracked`) that the checkpoint lacks, as checkpoints written from Flax do, are
    left to torch's `load_state_dict`, which fills them.
    """
    state = pair.mapping.canonical_to_torch(checkpoint.arrays)
    torch_only = {}
    for key, (shape, dtype) in _torch_shapes(pair).items():
        rule = pair.mapping.rule_for(key, "torch")
        if key not in state and rule is not None and rule.collection is None:
            torch_only[key] = np.zeros(shape, dtype)
    check_torch_state({**state, **torch_only}, pair, path, complete=complete)
    return state


def checkpoint_from_flax(variables: MappingType[str, Any], pair: Pair, *,
                         source: str = "flax", path: str | Path = MEMORY) -> Checkpoint:
    """A canonical checkpoint from Flax variables ({'params': ..., 'batch_stats': ...}).

    Raises:
        CheckpointError: naming `path` (the .msgpack file): variables no rule accounts for or
            in the wrong collection, and every missing, misshaped or mistyped tensor.
    """
    flat = {name: to_numpy(value) for name, value in flatten(variables).items()}
    arrays, layouts = _mapped(path, lambda: pair.mapping.flax_to_canonical(unflatten(flat)))
    checkpoint = Checkpoint(pair.name, arrays, layouts, source)
    _verify_for_flax(checkpoint, pair, path)
    return checkpoint


def checkpoint_to_flax(checkpoint: Checkpoint, pair: Pair,
                       path: str | Path = MEMORY) -> dict[str, Any]:
    """Flax variables (nested dicts of numpy arrays) from a checkpoint, checked with eval_shape.

    The mapping's Flax-only variables, which no checkpoint holds, take the values the Flax
    module's own init gives them (jax.random.key(0); an NNX port's init gives zeros), as
    `Mapping.canonical_to_flax` asks.

    Raises:
        CheckpointError: missing, unexpected, misshaped (shape and layout shown) or mistyped
            tensors, all listed; a Flax-only variable the Flax module does not have.
    """
    kept = {}
    for name, array in checkpoint.arrays.items():
        rule = pair.mapping.rule_for(name)
        if rule is None or rule.collection is not None:
            kept[name] = array
    _verify_for_flax(Checkpoint(checkpoint.architecture, kept, checkpoint.layouts), pair, path)
    flax_only = _flax_only_values(pair) if pair.mapping.flax_only else {}
    return _mapped(path, lambda: pair.mapping.canonical_to_flax(kept, flax_only=flax_only))


def _flax_only_values(pair: Pair) -> dict[str, Any]:
    from pytest_parity.checkpoint.flax_variables import initial_values

    args, kwargs = pair.flax_examples()
    return initial_values(flax_module_of(pair), args, kwargs, pair.mapping.is_flax_only)
