"""Where one side's cached step parts from its own call over the whole sequence.

A side whose cached steps disagree with its one call over everything (pytest_parity.run.
decoding: cache consistency) has a bug the cache alone shows: a rotary offset not advanced, a
cache written at the wrong index, a mask that the prompt's call builds differently from a
step's. Both calls run once more with every module's output kept (torch: forward hooks; Flax:
its modules' calls intercepted inside one jitted call, as pytest_parity.diagnose.capture does)
and each module's output at the step's position is compared, in the order the modules finished
(a module's children before it): the first that differs is where the step goes wrong. Its array
inputs are compared the same way, so that a module given other inputs (positions, a mask) says
so. No mapping is needed: one side against itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_parity.calls import signature_target
from pytest_parity.compare import compare, leaves
from pytest_parity.diagnose import argument_names
from pytest_parity.mapping import intercepted_calls
from pytest_parity.nnx_bridge import NNXPort
from pytest_parity.run.decoding_sides import FlaxSide, TorchSide, bound

# path -> (its array inputs, its output arrays, each input's parameter name), in the order the
# calls finished
Calls = dict[str, tuple[list[np.ndarray], list[np.ndarray], list[str | None]]]


@dataclass(frozen=True)
class CacheCulprit:
    """The first module whose output parts while its inputs agree; or, where every module
    that parts is given other inputs, the outermost of them with the inputs that differ (the
    step's call is given other arrays than the call over everything: positions, a mask)."""

    side: str
    step: int
    module: str  # torch's module name, or the Flax module's path ('' the model itself)
    max_abs: float
    inputs_differ: tuple[str, ...]  # the parameter names (or #index) of its differing inputs

    def line(self) -> str:
        where = f"  {self.side} side, step {self.step}: "
        if not self.inputs_differ:
            return (f"{where}the cached step parts from one call over the sequence first at "
                    f"module {self.module} (output max abs {self.max_abs:.3g}; its inputs agree)")
        return (f"{where}the cached step is given other inputs than one call over the sequence: "
                f"{', '.join(self.inputs_differ)} of {self.module or 'the model'} (its output "
                f"max abs {self.max_abs:.3g}; no module parts on inputs that agree)")


def _arrays(value: Any) -> list[np.ndarray]:
    return [np.asarray(leaf, np.float32) for leaf in leaves(value).values()
            if hasattr(leaf, "shape") and hasattr(leaf, "dtype")]


def torch_calls(side: TorchSide, call: Callable[[], Any]) -> Calls:
    import torch

    found: Calls = {}

    def hook(name: str) -> Callable[..., None]:
        def kept(module: Any, args: Any, kwargs: Any, output: Any) -> None:
            if name not in found:
                given = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
                found[name] = ([a.detach().float().cpu().numpy() for a in given],
                               [a.detach().float().cpu().numpy() for a in leaves(output).values()
                                if isinstance(a, torch.Tensor)],
                               argument_names(signature_target(module), args, kwargs))
        return kept

    hooks = [module.register_forward_hook(hook(name), with_kwargs=True)
             for name, module in side.model.named_modules()]
    try:
        with torch.no_grad():
            call()
    finally:
        for handle in hooks:
            handle.remove()
    return found


def flax_calls(side: FlaxSide, call: Callable[[Any], Any]) -> Calls:
    """`call(model)` (model as the side's decoder takes it) in one jitted run with every
    module call's array inputs and outputs kept."""
    import flax.linen as nn
    import jax

    order: list[str] = []
    names: dict[str, list[str | None]] = {}

    def run(variables: Any) -> Any:
        model = bound(side.module, variables)
        found: list[tuple[list[Any], list[Any]]] = []

        depth = [0]

        def keep(path: str, function: Callable[..., Any], args: Any, kwargs: Any,
                 named: Any) -> Any:
            depth[0] += 1
            try:
                output = function(*args, **kwargs)
            finally:
                depth[0] -= 1
            # A module applied on its own inside the call (transformers' tied GPT-2 head: a
            # Dense given the embedding) has the root's path too: the root is the outermost.
            if path not in order and (path or depth[0] == 0):
                order.append(path)
                names[path] = argument_names(named, args, kwargs)
                found.append(([a for a in (*args, *kwargs.values()) if hasattr(a, "shape")],
                              [leaf for leaf in leaves(output).values()
                               if hasattr(leaf, "shape")]))
            return output

        if isinstance(side.module, NNXPort):
            with intercepted_calls(model[0], lambda path, sub, function, args, kwargs:
                                   keep(path, function, args, kwargs, sub.__call__)):
                call(model)
            return found

        def linen(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
            # A decoder that makes its cache with `init` (shapes only) is not the call followed.
            if context.method_name != "__call__" or context.module.is_initializing():
                return next_fun(*args, **kwargs)
            return keep("/".join(context.module.path), next_fun, args, kwargs,
                        context.module.__call__)

        with nn.intercept_methods(linen):
            call(model)
        return found

    ran = jax.jit(run)(side.variables)
    return {path: ([np.asarray(a, np.float32) for a in given],
                   [np.asarray(a, np.float32) for a in out], names[path])
            for path, (given, out) in zip(order, ran, strict=True)}


def _at(array: np.ndarray, length: int, index: int) -> np.ndarray | None:
    """The position `index` of an array whose second axis is a call's sequence (`length`)."""
    return array[:, index] if array.ndim >= 2 and array.shape[1] == length else None


def _differing(cached: list[np.ndarray], whole: list[np.ndarray], lengths: tuple[int, int],
               indices: tuple[int, int], tolerance: dict[str, float]) -> tuple[list[int], float]:
    """Which of the arrays differ at the step's position, and the largest difference."""
    differ, largest = [], 0.0
    for number, (mine, theirs) in enumerate(zip(cached, whole, strict=False)):
        a, b = _at(mine, lengths[0], indices[0]), _at(theirs, lengths[1], indices[1])
        if a is None or b is None or a.shape != b.shape:
            continue
        comparison = compare(a, b, rtol=tolerance.get("rtol"), atol=tolerance.get("atol"))
        if not comparison.passed:
            differ.append(number)
            largest = max(largest, comparison.max_abs)
    return differ, largest


def first_parting(side_name: str, step: int, cached: Calls, whole: Calls,
                  lengths: tuple[int, int], indices: tuple[int, int],
                  tolerance: dict[str, float]) -> CacheCulprit | None:
    """The first module, in the order the cached call finished them, whose output differs
    while its inputs agree; else the outermost whose output and inputs differ."""
    outermost = None
    for path, (inputs, outputs, names) in cached.items():
        if path not in whole:
            continue
        differ, largest = _differing(outputs, whole[path][1], lengths, indices, tolerance)
        if not differ:
            continue
        given, _ = _differing(inputs, whole[path][0], lengths, indices, tolerance)
        named = [names[i] if i < len(names) else None for i in given]
        found = CacheCulprit(side_name, step, path, largest, tuple(
            name or f"#{i}" for i, name in zip(given, named, strict=True)))
        if not given:
            return found
        outermost = found
    return outermost


def cache_culprit(side_name: str, side: TorchSide | FlaxSide, run: Any, step: int,
                  tolerance: dict[str, float]) -> CacheCulprit | None:
    """Decode again on one side up to `step`, and follow its cached call and its call over the
    whole sequence through its modules (run: pytest_parity.run.decoding.DecodingRun)."""
    prompt = run.prompt_length
    ids, mask = run.sequence[:, :prompt], run.mask[:, :prompt]
    max_length = prompt + run.tokens.shape[1]
    decoder: Any = side.decoder
    if step > 0:
        side.start(ids, mask, max_length)
        for fed in range(step - 1):
            side.step(run.tokens[:, fed])
    state = side.state

    def given(*arrays: np.ndarray) -> list[Any]:
        if isinstance(side, TorchSide):
            return [side.tensor(array) for array in arrays]
        return [np.asarray(array, np.int32) for array in arrays]

    def cached(model: Any) -> Any:
        if step == 0:
            return decoder.start(model, *given(ids, mask), max_length)
        return decoder.step(model, state, given(run.tokens[:, step - 1])[0])

    def over_everything(model: Any) -> Any:
        return decoder.start(model, *given(run.sequence, run.mask), run.sequence.shape[1])

    if isinstance(side, TorchSide):
        model = side.model
        first = torch_calls(side, lambda: cached(model))
        second = torch_calls(side, lambda: over_everything(model))
    else:
        first, second = flax_calls(side, cached), flax_calls(side, over_everything)
    length = prompt if step == 0 else 1
    return first_parting(side_name, step, first, second, (length, run.sequence.shape[1]),
                         (length - 1, prompt - 1 + step), tolerance)
