"""Both models as lists of layers of known kinds, in call order, and the tensors in none.

torch's layers in the order its forward calls them (pytest_parity.mapping.torch_calls), those
it never calls after, in registration order; Flax's in call order (recorded while
`jax.eval_shape` traces a Linen module's `init`, or an NNX module's call). A Flax "model" that
wraps a Linen module (transformers' `FlaxBertModel`: a `.module` and its `.params`) is traced
through its module. Kinds are looked up by class name along the MRO, so a library's own
classes (transformers' `Conv1D`, a Linear keeping its weight as (in, out)) are known without
importing the library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pytest_parity.calls import wrapped_module
from pytest_parity.mapping.nnx_calls import called_in_order
from pytest_parity.mapping.pairing import Layer
from pytest_parity.mapping.rule import MappingError
from pytest_parity.mapping.rules import flatten
from pytest_parity.nnx_bridge import NNXPort, as_port, is_nnx_module, port

# torch class name -> kind; Flax class name -> kind, Linen's and NNX's (subclasses are looked up
# by their MRO).
TORCH_KINDS = {
    "Conv1d": "conv", "Conv2d": "conv", "Conv3d": "conv",
    "ConvTranspose1d": "conv_transpose", "ConvTranspose2d": "conv_transpose",
    "Linear": "linear", "LayerNorm": "layer_norm", "GroupNorm": "group_norm",
    "BatchNorm1d": "batch_norm", "BatchNorm2d": "batch_norm", "BatchNorm3d": "batch_norm",
    "Embedding": "embedding", "MultiheadAttention": "attention",
    "Conv1D": "linear",  # transformers' (GPT-2): weight (in, out)
}
FLAX_KINDS = {
    "Conv": "conv", "ConvTranspose": "conv_transpose", "Dense": "linear",
    "LayerNorm": "layer_norm", "GroupNorm": "group_norm", "BatchNorm": "batch_norm",
    "Embed": "embedding", "MultiHeadDotProductAttention": "attention",
    "Linear": "linear", "MultiHeadAttention": "attention",  # NNX's names
    "FlaxConv1D": "linear",  # transformers' (GPT-2): kernel (out, in)
}
# The layout of a linear layer's weight where it is not the framework's usual one (torch
# Linear: (out, in) 'OI'; Flax Dense: (in, out) 'IO').
TORCH_KERNELS = {"Conv1D": "IO"}
FLAX_KERNELS = {"FlaxConv1D": "OI"}


def _kind(cls: type, kinds: dict[str, str]) -> str | None:
    return next((kinds[c.__name__] for c in cls.__mro__ if c.__name__ in kinds), None)


def tied_keys(model: Any, order: Sequence[str] | None = None) -> dict[str, str]:
    """Each state-dict key whose tensor is one an earlier key holds (one Parameter held by two
    modules, as GPT-2's `lm_head.weight` is `wte.weight`), with that key: earlier in call
    order (`order`: module names as called), else in the state dict."""
    first: dict[int, str] = {}
    state = model.state_dict(keep_vars=True)
    owners = _in_order(list(dict.fromkeys(key.rpartition(".")[0] for key in state)), order)
    position = {owner: index for index, owner in enumerate(owners)}
    keys = sorted(state, key=lambda key: position[key.rpartition(".")[0]])
    return {key: original for key in keys
            if (original := first.setdefault(id(state[key]), key)) != key}


def _in_order(names: Sequence[str], order: Sequence[str] | None) -> list[str]:
    """`names` in call order (`order`: module names as called), those never called after."""
    if order is None:
        return list(names)
    position = {name: index for index, name in enumerate(order)}
    return sorted(names, key=lambda name: position.get(name, len(position)))


def torch_layers(model: Any, order: Sequence[str] | None = None
                 ) -> tuple[list[Layer], list[str]]:
    """The torch model's layers of known kinds, and the state-dict keys no such layer holds,
    both in call order (`order`: module names as the forward called them; None: as
    registered)."""
    state = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    modules = dict(model.named_modules())
    layers: list[Layer] = []
    covered: set[str] = set()
    for name in _in_order(list(modules), order):
        module = modules[name]
        kind = _kind(type(module), TORCH_KINDS)
        if kind is None or any(name.startswith(f"{layer.name}.") for layer in layers
                               if layer.kind == "attention"):
            continue
        prefix = f"{name}." if name else ""
        shapes = {key: shape for key, shape in state.items() if key.startswith(prefix)
                  and (kind == "attention" or "." not in key[len(prefix):])}
        if not shapes:
            continue  # e.g. LayerNorm without affine parameters
        options: dict[str, Any] = {"transpose_kernel": None,
                                   "kernel": _kind(type(module), TORCH_KERNELS) or "OI"}
        if kind == "attention":
            options = {"num_heads": module.num_heads, "embed_dim": module.embed_dim}
            if getattr(module, "in_proj_weight", None) is None:
                raise MappingError(f"automatic mapping: torch {name} "
                                   "(MultiheadAttention) keeps separate q/k/v projections "
                                   "(kdim/vdim != embed_dim); give its rules as extra_rules")
        layers.append(Layer(name, kind, type(module).__name__, shapes, options))
        covered.update(shapes)
    position = {name: index for index, name in enumerate(order or ())}
    return layers, sorted((key for key in state if key not in covered), key=lambda key:
                          position.get(key.rpartition(".")[0], len(position)))


def _holds(layer: str, path: str, nested: bool) -> bool:
    """Whether a variable's path (without its collection) belongs to the layer: directly, or
    (`nested`: attention's query/key/value/out) anywhere below it."""
    if not nested:
        return path.rpartition("/")[0] == layer
    return path.startswith(f"{layer}/") if layer else True


def flax_side_of(flax_module: Any) -> Any:
    """The Flax side as it is traced: a Linen module as it is, or the one a wrapper holds
    (transformers' `FlaxBertModel`); an NNX module (concrete or abstract) or an NNX factory
    behind pytest_parity.nnx_bridge.NNXPort."""
    import flax.linen as nn

    if isinstance(flax_module, (nn.Module, NNXPort)):
        return flax_module
    wrapped = wrapped_module(flax_module)
    if wrapped is not flax_module:
        return wrapped
    if is_nnx_module(flax_module):
        return as_port(flax_module)
    return port(flax_module) if callable(flax_module) else flax_module


def _linen_calls(module: Any, inputs: tuple[Any, ...], kwargs: dict[str, Any]
                 ) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """A Linen module's submodules by path in call order, and its variables' shapes, from
    `jax.eval_shape` of its init."""
    import flax.linen as nn
    import jax

    called: dict[str, Any] = {}

    def record(next_fun: Callable[..., Any], args: Any, kw: Any, context: Any) -> Any:
        if context.method_name == "__call__":
            called.setdefault("/".join(context.module.path), context.module)
        return next_fun(*args, **kw)

    with nn.intercept_methods(record):
        # Keyword arrays go through eval_shape as arguments too: captured in the lambda, a
        # jax.ShapeDtypeStruct would be a constant of the trace, not an abstract array; other
        # keywords (train=False) stay Python values.
        arrays = {name: value for name, value in kwargs.items() if hasattr(value, "shape")}
        static = {name: value for name, value in kwargs.items() if name not in arrays}
        variables = jax.eval_shape(
            lambda xs, kw: module.init(jax.random.key(0), *xs, **kw, **static), inputs, arrays)
    return called, {path: tuple(value.shape) for path, value in flatten(variables).items()}


def flax_layers(module: Any, *inputs: Any, **kwargs: Any) -> tuple[list[Layer], list[str]]:
    """The Flax module's layers of known kinds in call order, traced abstractly on `inputs`
    (arrays or jax.ShapeDtypeStruct), and the variables no such layer holds (in the call order
    of the modules holding them). `module`: a Linen module, or an NNX one as flax_side_of
    takes it."""
    layers, rest, _ = flax_layers_and_shapes(module, *inputs, **kwargs)
    return layers, rest


def flax_layers_and_shapes(module: Any, *inputs: Any, **kwargs: Any
                           ) -> tuple[list[Layer], list[str], dict[str, tuple[int, ...]]]:
    """flax_layers, and every variable's shape ('collection/path' -> shape)."""
    module = flax_side_of(module)
    if isinstance(module, NNXPort):
        called = called_in_order(module, inputs, kwargs)
        flat = {key: shape for key, (shape, _) in module.variable_shapes().items()}
    else:
        called, flat = _linen_calls(module, inputs, kwargs)
    layers: list[Layer] = []
    covered: set[str] = set()
    for name, bound in called.items():
        kind = _kind(type(bound), FLAX_KINDS)
        if kind is None or any(name.startswith(f"{layer.name}/") for layer in layers
                               if layer.kind == "attention"):
            continue
        shapes = {key: shape for key, shape in flat.items()
                  if _holds(name, key.partition("/")[2], kind == "attention")}
        if not shapes:
            continue
        options = {"transpose_kernel": getattr(bound, "transpose_kernel", None),
                   "kernel": _kind(type(bound), FLAX_KERNELS) or "IO"}
        layers.append(Layer(name, kind, type(bound).__name__, shapes, options))
        covered.update(shapes)
    position = {name: index for index, name in enumerate(called)}
    rest = sorted((key for key in flat if key not in covered), key=lambda key: position.get(
        key.partition("/")[2].rpartition("/")[0], len(position)))
    return layers, rest, flat
