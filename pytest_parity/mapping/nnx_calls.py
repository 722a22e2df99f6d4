"""The calls of an NNX module's submodules, intercepted as flax.linen.intercept_methods does for
Linen, and the submodules an NNX port calls, in call order, traced abstractly.

Linen hands every method call of a bound module to its interceptors; NNX modules are plain
Python objects, so for the duration the `__call__` of each class in the module's tree is
wrapped (as `nnx.capture` wraps methods to sow their outputs), and the wrapper hands each call
of a submodule of the tree to the interceptor with the submodule's path ('layers/0/conv': list
indices as path parts, as pytest_parity.nnx_bridge addresses variables). Only a submodule's
outermost call is handed over (a subclass's `__call__` calling `super().__call__()` is one
call), and objects outside the tree (other threads' modules) pass through untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

# (path, the submodule, its call, args, kwargs) -> the call's output
Interceptor = Callable[[str, Any, Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]


def path_text(path: tuple[Any, ...]) -> str:
    return "/".join(str(part) for part in path)


def submodules(module: Any) -> dict[str, Any]:
    """Every module of an NNX module's tree (itself at ''), by path."""
    from flax import nnx

    return {path_text(path): sub for path, sub in nnx.iter_modules(module)}


def _own_call(cls: type) -> Callable[..., Any] | None:
    """The `__call__` a class's instances run (None where no class of its MRO defines one)."""
    return next((c.__dict__["__call__"] for c in cls.__mro__ if "__call__" in c.__dict__), None)


@contextmanager
def intercepted_calls(module: Any, interceptor: Interceptor) -> Iterator[None]:
    """While inside, every call of a submodule of `module`'s tree (itself included) goes
    through `interceptor`."""
    paths = {id(sub): path for path, sub in submodules(module).items()}
    classes = list(dict.fromkeys(type(sub) for sub in submodules(module).values()))
    # Resolved before any is wrapped: a subclass inheriting its base's call gets the original.
    originals = {cls: call for cls in classes if (call := _own_call(cls)) is not None}
    active: set[int] = set()

    def wrapped(original: Callable[..., Any]) -> Callable[..., Any]:
        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            key = id(self)
            if key not in paths or key in active:
                return original(self, *args, **kwargs)
            active.add(key)
            try:
                return interceptor(paths[key], self, partial(original, self), args, kwargs)
            finally:
                active.discard(key)
        return __call__

    owned = {cls: cls.__dict__.get("__call__") for cls in originals}
    try:
        for cls, original in originals.items():
            cls.__call__ = wrapped(original)
        yield
    finally:
        for cls, own in owned.items():
            if own is None:
                delattr(cls, "__call__")
            else:
                cls.__call__ = own


def called_in_order(port: Any, inputs: tuple[Any, ...], kwargs: dict[str, Any]
                    ) -> dict[str, Any]:
    """The submodules an NNXPort's module calls on `inputs` (arrays or jax.ShapeDtypeStruct),
    by path in call order (a parent before its children), from `jax.eval_shape` of its call
    on variables of its shapes: nothing is initialised and nothing runs."""
    import jax

    called: dict[str, Any] = {}

    def record(path: str, sub: Any, call: Callable[..., Any], args: tuple[Any, ...],
               kw: dict[str, Any]) -> Any:
        called.setdefault(path, sub)
        return call(*args, **kw)

    # Keyword arrays are arguments of the trace (abstract), other keywords Python values.
    arrays = {name: value for name, value in kwargs.items() if hasattr(value, "shape")}
    static = {name: value for name, value in kwargs.items() if name not in arrays}
    variables = _abstract_variables(port)

    def forward(variables: Any, xs: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        module = port.bound(variables)
        with intercepted_calls(module, record):
            return module(*xs, **kw, **static)

    jax.eval_shape(forward, variables, inputs, arrays)
    structural = submodules(port.module)
    return {path: structural.get(path, sub) for path, sub in called.items()}


def _abstract_variables(port: Any) -> dict[str, Any]:
    """The port's mapped variables as Linen-style nested dicts of jax.ShapeDtypeStruct."""
    import jax

    nested: dict[str, Any] = {}
    for key, (shape, dtype) in port.variable_shapes().items():
        *parents, leaf = key.split("/")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = jax.ShapeDtypeStruct(shape, dtype)
    return nested
