"""Flax variables checked against a module's structure without running its `init`.

`jax.eval_shape` traces `init` abstractly: it yields every variable's shape and dtype in a
fraction of the time `init` takes (ResNet-50: ~9 s to run on this CPU), allocating nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping as MappingType
from typing import Any

import numpy as np

from pytest_parity.checkpoint.verify import TensorSpec
from pytest_parity.errors import ParityError
from pytest_parity.mapping import Mapping, flatten, unflatten
from pytest_parity.user_frames import user_frame


def expected_variables(module: Any, args: tuple[Any, ...], kwargs: MappingType[str, Any],
                       owner: str = "the Flax module"
                       ) -> dict[str, tuple[tuple[int, ...], str]]:
    """Each Flax variable path ('params/conv1/kernel') with its (shape, dtype), via eval_shape
    of `init` on example inputs (jax.ShapeDtypeStructs, positional and keyword).

    Raises:
        ParityError: the module cannot be traced on those inputs (a missing argument, a shape
            it does not take); names `owner`, the inputs and the line of the user's code
            where the error arose, and is chained to the error.
    """
    import jax

    try:
        shapes = jax.eval_shape(lambda a, k: module.init(jax.random.key(0), *a, **k),
                                tuple(args), dict(kwargs))
    except Exception as error:  # the user's module: any error is a declaration problem
        given = ", ".join([*(f"{a.shape} {a.dtype}" for a in args),
                           *(f"{n}={a.shape} {a.dtype}" for n, a in kwargs.items())])
        where = user_frame(error)
        raise ParityError(f"{owner}: {type(module).__name__}.init cannot run on the "
                          f"declared inputs ({given}): {type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}"
                          + (f"\n  raised at {where}" if where else "")) from error
    return {path: (tuple(leaf.shape), str(leaf.dtype))
            for path, leaf in flatten(shapes).items()}


def initial_values(module: Any, args: tuple[Any, ...], kwargs: MappingType[str, Any],
                   wanted: Callable[[str], bool]) -> dict[str, Any]:
    """The variables `wanted` picks ('collection/path' -> bool) as the module's own `init`
    gives them under jax.random.key(0), as nested dicts of numpy arrays.

    Flax-only variables (no torch tensor gives them) take these values when a checkpoint is
    loaded. `init` runs jitted on zero inputs of the example shapes (jax.ShapeDtypeStructs),
    so XLA computes only the picked variables' initializers, not the whole model's.
    """
    import jax
    import jax.numpy as jnp

    def picked() -> dict[str, Any]:
        zeros = [jnp.zeros(a.shape, a.dtype) for a in args]
        named = {name: jnp.zeros(a.shape, a.dtype) for name, a in kwargs.items()}
        variables = module.init(jax.random.key(0), *zeros, **named)
        return {path: value for path, value in flatten(variables).items() if wanted(path)}

    return unflatten({path: np.asarray(value) for path, value in jax.jit(picked)().items()})


def canonical_spec(mapping: Mapping, expected: MappingType[str, tuple[tuple[int, ...], str]]
                   ) -> dict[str, TensorSpec]:
    """The canonical tensors a Flax module expects, with the layouts its mapping declares."""
    spec = {}
    for flax_path, (shape, dtype) in expected.items():
        if mapping.is_flax_only(flax_path):  # no torch counterpart: never in a checkpoint
            continue
        _, _, path = flax_path.partition("/")
        rule = mapping.rule_for(path)
        spec[path] = TensorSpec(shape, dtype, rule.layout if rule else "?")
    return spec
