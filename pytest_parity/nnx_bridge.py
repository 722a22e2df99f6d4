"""A Flax NNX module behind the interface the plugin uses for a Linen module.

Linen keeps variables outside the module (`module.apply(variables, x)`, variables a nested dict
by collection); NNX keeps them on the module (`nnx.Param`, `nnx.BatchStat`). `NNXPort` wraps an
NNX module so that the rest of the plugin sees it the Linen way, with one mapping serving both
where their trees agree:

    NNX                                   Linen-style variables
    nnx.Param       at ('layers', 0, 'kernel')   {'params': {'layers': {'0': {'kernel': ...}}}}
    nnx.BatchStat   at ('bn', 'mean')            {'batch_stats': {'bn': {'mean': ...}}}

`port(factory)` builds the module abstractly (`nnx.eval_shape`: shapes only, no initializer
runs, nothing allocated); `apply(variables, *args, **kwargs)` merges the variables into the
module's graph and calls it (jit it like a Linen apply: the graph is static); `clone(dtype=)`
sets the computation dtype of every submodule that has one (NNX's convention). Variables of
other types (a Dropout's RNG state) are filled with fixed values: parity runs are
deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pytest_parity.errors import ParityError

# The NNX variable types a mapping addresses, as the Linen collection of the same role.
COLLECTION_OF = {"Param": "params", "BatchStat": "batch_stats"}


def is_nnx_module(value: Any) -> bool:
    """Whether `value` is a flax.nnx Module (checked without importing flax)."""
    return any(cls.__name__ == "Module" and cls.__module__.startswith("flax.nnx")
               for cls in type(value).__mro__)


def _path_text(path: tuple[Any, ...]) -> str:
    return "/".join(str(part) for part in path)


def _collection(variable: Any) -> str:
    for cls in type(variable).__mro__:
        if cls.__name__ in COLLECTION_OF:
            return COLLECTION_OF[cls.__name__]
    return type(variable).__name__.lower()


def _fixed(struct: Any) -> Any:
    """A fixed concrete value of an abstract variable that no mapping fills (RNG state)."""
    import jax

    if jax.dtypes.issubdtype(struct.dtype, jax.dtypes.prng_key):
        return jax.random.split(jax.random.key(0), int(np.prod(struct.shape))
                                ).reshape(struct.shape)
    return jax.numpy.zeros(struct.shape, struct.dtype)


class NNXPort:
    """An NNX module (built abstractly) seen as a Linen module: init, apply, clone."""

    def __init__(self, module: Any) -> None:
        from flax import nnx

        self.module = module
        self.graphdef, state = nnx.split(module)
        self.flat = list(nnx.to_flat_state(state))
        self._in_dtype: dict[Any, NNXPort] = {}

    @property
    def name(self) -> str:
        return type(self.module).__name__

    @property
    def dtype(self) -> Any:  # present, so that the plugin casts it like a Linen module
        return getattr(self.module, "dtype", None)

    def variable_shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Each mapped variable ('params/layers/0/kernel') with its (shape, dtype)."""
        return {f"{_collection(v)}/{_path_text(path)}": (tuple(v.shape), str(v.dtype))
                for path, v in self.flat if _collection(v) in COLLECTION_OF.values()}

    def variables_of(self, module: Any) -> dict[str, Any]:
        """A concrete NNX module's mapped variables as Linen-style nested dicts of arrays
        (list indices as strings)."""
        from flax import nnx

        _, state = nnx.split(module)
        nested: dict[str, Any] = {}
        for path, variable in nnx.to_flat_state(state):
            collection = _collection(variable)
            if collection not in COLLECTION_OF.values():
                continue
            node = nested.setdefault(collection, {})
            for part in path[:-1]:
                node = node.setdefault(str(part), {})
            node[str(path[-1])] = variable.get_value()
        return nested

    def _state(self, variables: Mapping[str, Any], partly: bool = False) -> Any:
        from flax import nnx

        def value(path: tuple[Any, ...], variable: Any) -> Any:
            collection = _collection(variable)
            if collection not in COLLECTION_OF.values():
                return _fixed(variable.get_value())
            node: Any = variables.get(collection, {})
            for part in path:
                if not isinstance(node, Mapping) or str(part) not in node:
                    if partly:
                        return variable.get_value()
                    raise ParityError(f"{self.name}: no value for the NNX variable "
                                      f"{collection}/{_path_text(path)}")
                node = node[str(part)]
            return node

        return nnx.from_flat_state([(path, variable.replace(value(path, variable)))
                                    for path, variable in self.flat])

    def bound(self, variables: Mapping[str, Any]) -> Any:
        """The NNX module holding `variables` (traceable: under jit, a fresh module)."""
        from flax import nnx

        return nnx.merge(self.graphdef, self._state(variables))

    def partly_bound(self, variables: Mapping[str, Any]) -> Any:
        """The NNX module holding `variables` where given, its other variables left abstract
        (a streamed check gives each block its own just before it runs)."""
        from flax import nnx

        return nnx.merge(self.graphdef, self._state(variables, partly=True))

    def apply(self, variables: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        """The module's output on the inputs, with `variables` (Linen's apply, for NNX)."""
        return self.bound(variables)(*args, **kwargs)

    def init(self, rng: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Zero variables of the module's shapes (for jax.eval_shape: no initializer runs)."""
        import jax.numpy as jnp

        nested: dict[str, Any] = {}
        for key, (shape, dtype) in self.variable_shapes().items():
            *parents, leaf = key.split("/")
            node = nested
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = jnp.zeros(shape, dtype)
        return nested

    def clone(self, *, dtype: Any) -> NNXPort:
        """A port computing in `dtype`: every submodule with a `dtype` attribute gets it. One
        per dtype, kept: building it walks the whole graph (ResNet-50: 32-48 ms, as much as
        the NNX pair's whole excess over the Linen pair in getting ready), and a port is
        never changed (its graph and flat state are taken once, when it is made)."""
        from flax import nnx

        if dtype not in self._in_dtype:
            module = nnx.merge(self.graphdef, nnx.from_flat_state(self.flat))
            for _, submodule in nnx.iter_modules(module):
                if hasattr(submodule, "dtype"):
                    submodule.dtype = dtype
            self._in_dtype[dtype] = NNXPort(module)
        return self._in_dtype[dtype]


def port(factory: Callable[[], Any]) -> Any:
    """What a Flax factory builds, as the plugin uses it: a Linen module as it is; an NNX
    module built abstractly (nnx.eval_shape: no initializer runs) and wrapped in NNXPort."""
    from flax import nnx

    built: dict[str, Any] = {}

    def build() -> Any:
        module = factory()
        if is_nnx_module(module):
            return module
        built["other"] = module
        return None

    abstract = nnx.eval_shape(build)
    return built["other"] if "other" in built else NNXPort(abstract)


def as_port(module: Any) -> Any:
    """A module the plugin was given: an NNX module (concrete) wrapped in NNXPort."""
    return NNXPort(module) if is_nnx_module(module) else module
