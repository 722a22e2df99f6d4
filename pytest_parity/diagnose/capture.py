"""Both sides run once with every aligned module's inputs and outputs captured.

torch: forward hooks (the first call of each module; every module's first call gives the
execution order). Flax: `flax.linen.intercept_methods` around a jitted apply that returns
what it captured, so the trace costs one compilation, and the module objects seen in the call
(for the settings audit and for running one module on its own). An NNX side (behind
pytest_parity.nnx_bridge.NNXPort) the same way: its submodules' calls intercepted inside one
jitted apply (pytest_parity.mapping.nnx_calls), its modules those of the port's own module
(their settings as built), run on their own through an NNXPort of the submodule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from pytest_parity.arrays import to_numpy
from pytest_parity.compare import leaves
from pytest_parity.diagnose.arguments import argument_names, is_array
from pytest_parity.mapping import intercepted_calls, submodules
from pytest_parity.nnx_bridge import NNXPort, is_nnx_module


@dataclass
class Captured:
    """A module's first call: its array arguments and its output leaves, as numpy, and each
    argument's parameter name in the module's signature (None where it has none)."""

    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    names: list[str | None] = field(default_factory=list)


@dataclass
class TorchCapture:
    calls: dict[str, Captured] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # every module, by first call


# Where a call's arrays go: its positional arguments and keywords, each array replaced by
# SLOT; Captured.inputs holds the arrays in slot order (positional ones first).
SLOT = object()


@dataclass(frozen=True)
class CallTemplate:
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def filled(self, arrays: list[Any]) -> tuple[list[Any], dict[str, Any]]:
        given = iter(arrays)
        args = [next(given) if a is SLOT else a for a in self.args]
        kwargs = {k: next(given) if v is SLOT else v for k, v in self.kwargs.items()}
        return args, kwargs


@dataclass
class FlaxCapture:
    calls: dict[str, Captured] = field(default_factory=dict)
    modules: dict[str, Any] = field(default_factory=dict)  # path -> the module as called
    templates: dict[str, CallTemplate] = field(default_factory=dict)


def _leaves(value: Any) -> list[Any]:
    """An output tree's leaves, in order; None (an output a module leaves out) is none."""
    return [leaf for leaf in leaves(value).values() if leaf is not None]


def capture_torch(model: Any, inputs: Any, names: Iterable[str]) -> TorchCapture:
    """Run the torch model once (no_grad) on its placed input (a dict: named inputs, given as
    keyword arguments), capturing `names`."""
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
                     if isinstance(leaf, torch.Tensor)],
                    argument_names(module.forward, args, kwargs))
        return hook

    for name, module in model.named_modules():
        hooks.append(module.register_forward_pre_hook(first_call(name)))
        if name in wanted:
            hooks.append(module.register_forward_hook(recorder(name), with_kwargs=True))
    try:
        with torch.no_grad():
            model(**inputs) if isinstance(inputs, dict) else model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return capture


def _template(args: Any, kwargs: Any) -> CallTemplate:
    return CallTemplate(tuple(SLOT if is_array(a) else a for a in args),
                        {k: SLOT if is_array(v) else v for k, v in kwargs.items()})


def linen_applied(module: Any, variables: Any, *args: Any, **kwargs: Any) -> Any:
    """`module.apply` with every collection but the parameters mutable and a fixed dropout key,
    the output alone returned: a call that updates BatchNorm's statistics (train mode) or draws
    dropout runs instead of failing (ModifyScopeVariableError, InvalidRngError); what it
    updates is dropped."""
    import jax

    mutable = [collection for collection in variables if collection != "params"]
    output = module.apply(variables, *args, rngs={"dropout": jax.random.PRNGKey(0)},
                          mutable=mutable or False, **kwargs)
    return output[0] if mutable else output


def _called(module: Any, inputs: Any) -> Any:
    if isinstance(inputs, dict):  # named inputs: keyword arguments
        return module(**inputs)
    return module(inputs)


# What an interceptor of every module call gets: the module's path, the module, its call, the
# call's arguments, and the function whose signature names them.
OnCall = Callable[[str, Any, Callable[..., Any], Any, Any, Any], Any]


def _run_intercepted(apply_module: Any, variables: Any, inputs: Any, on_call: OnCall) -> Any:
    """The Flax module (Linen, or NNX behind NNXPort) applied to `inputs`, every module's
    `__call__` going through `on_call`."""
    import flax.linen as nn

    if isinstance(apply_module, NNXPort):
        module = apply_module.bound(variables)
        with intercepted_calls(module, lambda path, sub, call, args, kwargs:
                               on_call(path, sub, call, args, kwargs, call)):
            return _called(module, inputs)

    def record(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        return on_call("/".join(context.module.path), context.module, next_fun, args, kwargs,
                       context.module.__call__)

    with nn.intercept_methods(record):
        return _called(partial(linen_applied, apply_module, variables), inputs)


def capture_flax(apply_module: Any, variables: Any, inputs: Any, paths: Iterable[str]
                 ) -> FlaxCapture:
    """Run the Flax module (Linen, or NNX behind NNXPort) once (jitted) on its placed input,
    capturing `paths`."""
    import jax

    wanted, capture = set(paths), FlaxCapture()
    found: dict[str, tuple[list[Any], list[Any]]] = {}
    names: dict[str, list[str | None]] = {}

    def keep(path: str, function: Any, args: Any, kwargs: Any, output: Any) -> None:
        if path in wanted and path not in found:
            found[path] = ([a for a in (*args, *kwargs.values()) if is_array(a)],
                           _leaves(output))
            capture.templates[path] = _template(args, kwargs)
            names[path] = argument_names(function, args, kwargs)

    nnx = isinstance(apply_module, NNXPort)

    def record(path: str, module: Any, call: Callable[..., Any], args: Any, kwargs: Any,
               named: Any) -> Any:
        output = call(*args, **kwargs)
        if path in wanted and path not in found and not nnx:
            capture.modules[path] = module.unbind()[0]
        keep(path, named, args, kwargs, output)
        return output

    def run(variables: Any, inputs: Any) -> Any:
        _run_intercepted(apply_module, variables, inputs, record)
        return found

    ran = jax.jit(run)(variables, inputs)
    if nnx:  # the port's own modules: their settings as built, no tracers of the run
        built = submodules(apply_module.module)
        capture.modules = {path: built[path] for path in ran}
    capture.calls = {path: Captured([np.asarray(a) for a in args],
                                    [np.asarray(leaf) for leaf in leaves if is_array(leaf)],
                                    names.get(path, []))
                     for path, (args, leaves) in ran.items()}
    return capture


def _with_leaves(output: Any, arrays: list[Any]) -> Any:
    """`output` with its array leaves (in `_leaves` order) replaced by `arrays`, each in its
    leaf's dtype; its containers as they were."""
    import jax

    replacing = {id(leaf): array for leaf, array in
                 zip([leaf for leaf in _leaves(output) if is_array(leaf)], arrays, strict=True)}
    return jax.tree_util.tree_map(
        lambda leaf: replacing[id(leaf)].astype(leaf.dtype) if id(leaf) in replacing else leaf,
        output)


def run_flax_patched(apply_module: Any, variables: Any, inputs: Any, path: str, *,
                     inputs_given: list[Any] | None = None,
                     outputs_given: list[Any] | None = None) -> list[np.ndarray]:
    """The model's output leaves (numpy) from one jitted run in which the first call of the
    module at `path` takes `inputs_given` in place of its array arguments, or returns
    `outputs_given` in place of its array outputs (each in its captured order): what the rest
    of the model makes of that module given, or giving, the torch side's arrays.

    Raises:
        ValueError: as many arrays as the call has are not given.
    """
    import jax

    def patched(call: Callable[..., Any], args: Any, kwargs: Any, given: list[Any]) -> Any:
        if inputs_given is not None:
            arrays = iter(given)
            args = tuple(next(arrays) if is_array(a) else a for a in args)
            kwargs = {k: next(arrays) if is_array(v) else v for k, v in kwargs.items()}
            return call(*args, **kwargs)
        return _with_leaves(call(*args, **kwargs), given)

    def run(variables: Any, inputs: Any, given: list[Any]) -> Any:
        done: list[bool] = []

        def first_call(at: str, _module: Any, call: Callable[..., Any], args: Any, kwargs: Any,
                       _named: Any) -> Any:
            if at != path or done:
                return call(*args, **kwargs)
            done.append(True)
            return patched(call, args, kwargs, given)

        output = _run_intercepted(apply_module, variables, inputs, first_call)
        if not done:
            raise ValueError(f"{path}: the module was not called")
        return [leaf for leaf in _leaves(output) if is_array(leaf)]

    given = inputs_given if inputs_given is not None else outputs_given
    return [np.asarray(leaf) for leaf in jax.jit(run)(variables, inputs, list(given or []))]


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


def module_call(capture: FlaxCapture, path: str) -> Callable[[Any, list[Any]], Any]:
    """The captured Flax module at `path` as a function of its variables and of arrays in
    place of its call's (its other arguments and keywords as they were)."""
    module, template = capture.modules[path], capture.templates[path]
    # An NNX submodule runs on its own as a port of its own (its variables relative to it).
    apply = NNXPort(module).apply if is_nnx_module(module) else partial(linen_applied, module)

    def call(sub_variables: Any, given: list[Any]) -> Any:
        args, kwargs = template.filled(given)
        return apply(sub_variables, *args, **kwargs)

    return call


def run_flax_module(capture: FlaxCapture, path: str, variables: Any, arrays: list[Any]
                    ) -> list[np.ndarray]:
    """The captured Flax module at `path`, run on its own on these arrays in place of the
    captured call's; output leaves as numpy.

    Raises:
        ValueError: as many arrays as the call took are not given.
    """
    import jax

    if len(arrays) != len(capture.calls[path].inputs):
        raise ValueError(f"{path}: its call took {len(capture.calls[path].inputs)} arrays, "
                         f"{len(arrays)} given")
    output = jax.jit(module_call(capture, path))(submodule_variables(variables, path),
                                                 list(arrays))
    return [np.asarray(leaf) for leaf in _leaves(output) if is_array(leaf)]
