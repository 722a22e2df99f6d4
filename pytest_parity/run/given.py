"""The two sides of a `@parity_test` as a test gives them: modules, or factories of them."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from pytest_parity.nnx_bridge import NNXPort, is_nnx_module, port


def built(spec: Any, is_instance: Callable[[Any], bool]) -> Any:
    """A module given as an instance, or a factory (a class or a function) that builds one."""
    return spec if is_instance(spec) else spec()


def flax_side(spec: Any, linen_module: type) -> Any:
    """The Flax side as given: a Linen module (or a factory of one), an NNX module (or a
    factory of one, built abstractly: no initializer runs) behind NNXPort, or a function of
    the input (no variables)."""
    if is_nnx_module(spec):
        return NNXPort(spec)
    if isinstance(spec, linen_module) or (not isinstance(spec, type) and callable(spec)
                                          and not _is_factory(spec)):
        return spec
    return port(spec)


def _is_factory(candidate: Any) -> bool:
    """A zero-argument callable that builds a Flax module (rather than a function of inputs)."""
    try:
        parameters = inspect.signature(candidate).parameters.values()
    except (TypeError, ValueError):
        return False
    return not any(p.default is inspect.Parameter.empty and p.kind in (
        p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)
