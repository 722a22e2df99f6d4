"""Both sides run once with every aligned module's inputs and outputs captured.

torch: forward hooks (the first call of each module; every module's first call gives the
execution order). Flax: `flax.linen.intercept_methods` around a jitted apply that returns
what it captured, so the trace costs one compilation, and the module objects seen in the call
(for the settings audit and for running one module on its own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_parity.arrays import to_numpy


@dataclass
class Captured:
    """A module's first call: its array arguments and its output leaves, as numpy."""

    inputs: list[np.ndarray]
    outputs: list[np.ndarray]


@dataclass
class TorchCapture:
    calls: dict[str, Captured] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # every module, by first call
    output: Any = None


@dataclass
class FlaxCapture:
    calls: dict[str, Captured] = field(default_factory=dict)
    modules: dict[str, Any] = field(default_factory=dict)  # path -> the module as called
    kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    positions: dict[str, list[int]] = field(default_factory=dict)  # of array arguments
    output: Any = None


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _leaves(item)]
    return [] if value is None else [value]


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def capture_torch(model: Any, inputs: Any, names: Iterable[str]) -> TorchCapture:
    """Run the torch model once (no_grad) on its placed input, capturing `names`."""
    import torch

    wanted, capture, hooks = set(names), TorchCapture(), []

    def first_call(name: str) -> Callable[..., None]:
        def hook(module: Any, args: Any) -> None:
            if name not in capture.order:
                capture.order.append(name)
        return hook

    def recorder(name: str) -> Callable[..., None]:
        def hook(module: Any, args: Any, kwargs: Any, output: Any) -> None:
            if name not in capture.calls:
                arrays = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
                # Copies: later in-place operations (ReLU(inplace=True), `out += identity`)
                # would otherwise change what was captured.
                capture.calls[name] = Captured(
                    [np.array(to_numpy(a)) for a in arrays],
                    [np.array(to_numpy(leaf)) for leaf in _leaves(output)
                     if isinstance(leaf, torch.Tensor)])
        return hook

    for name, module in model.named_modules():
        hooks.append(module.register_forward_pre_hook(first_call(name)))
        if name in wanted:
            hooks.append(module.register_forward_hook(recorder(name), with_kwargs=True))
    try:
        with torch.no_grad():
            capture.output = model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return capture


def capture_flax(apply_module: Any, variables: Any, inputs: Any, paths: Iterable[str]
                 ) -> FlaxCapture:
    """Run the Flax module once (jitted) on its placed input, capturing `paths`."""
    import flax.linen as nn
    import jax

    wanted, capture = set(paths), FlaxCapture()

    def run(variables: Any, inputs: Any) -> Any:
        found: dict[str, tuple[list[Any], list[Any]]] = {}

        def record(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
            output = next_fun(*args, **kwargs)
            path = "/".join(context.module.path)
            if context.method_name == "__call__" and path in wanted and path not in found:
                positions = [i for i, a in enumerate(args) if _is_array(a)]
                found[path] = ([args[i] for i in positions], _leaves(output))
                capture.modules[path] = context.module.unbind()[0]
                capture.kwargs[path] = dict(kwargs)
                capture.positions[path] = positions
            return output

        with nn.intercept_methods(record):
            output = apply_module.apply(variables, inputs)
        return output, found

    output, found = jax.jit(run)(variables, inputs)
    capture.output = output
    capture.calls = {path: Captured([np.asarray(a) for a in args],
                                    [np.asarray(leaf) for leaf in leaves if _is_array(leaf)])
                     for path, (args, leaves) in found.items()}
    return capture


def submodule_variables(variables: Any, path: str) -> dict[str, Any]:
    """The variables of the Flax submodule at `path`, by collection."""
    kept = {}
    for collection, tree in variables.items():
        node = tree
        for part in path.split("/") if path else []:
            node = node.get(part) if hasattr(node, "get") else None
            if node is None:
                break
        if node is not None:
            kept[collection] = node
    return kept


def run_flax_module(capture: FlaxCapture, path: str, variables: Any, arrays: list[Any]) -> list[
        np.ndarray]:
    """The captured Flax module at `path`, run on its own on these array arguments (its other
    arguments and keywords as in the captured call); output leaves as numpy."""
    import jax

    module, kwargs = capture.modules[path], capture.kwargs[path]
    positions = capture.positions[path]

    def call(sub_variables: Any, *given: Any) -> Any:
        return module.apply(sub_variables, *given, **kwargs)

    if len(positions) != len(arrays) or positions != list(range(len(positions))):
        raise ValueError(f"{path}: its call takes arguments other than arrays first")
    output = jax.jit(call)(submodule_variables(variables, path), *arrays)
    return [np.asarray(leaf) for leaf in _leaves(output) if _is_array(leaf)]
