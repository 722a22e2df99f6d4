"""How each side of a pair is called, and what comes back, for ports this project did not write.

A library's models take more than their inputs: flags at the call (`deterministic=True`,
`train=False`, `use_cache=False`, `output_hidden_states=True`) and return what the library
returns (transformers' ModelOutput objects, with fields left out where an option is off). A
pair declares the flags once, per side (`Pair(torch_call=..., flax_call=...)`); the models
are wrapped here so that every check calls them with the flags (assert_close, the gradients,
the training steps, the diagnosis, the reference runs of the budget), and their outputs are
read as plain trees: mappings and dataclasses as dicts without their None fields,
namedtuples as tuples.

The wrappers are subclasses made at run time, so that a module keeps its class name (the
settings audit and the mapping read it), its state-dict keys and its variable paths:

    torch:  type(model) -> a subclass whose forward adds the pair's torch_call
    Linen:  type(module) -> a subclass whose __call__ adds the pair's flax_call
    NNX:    NNXPort(module, call=flax_call)

A Flax side whose outputs are already in torch's layout (transformers' FlaxResNetModel
returns NCHW feature maps) declares it per output (`Pair(output_layout={"last_hidden_state":
Layout.SAME})`): those outputs are moved channels-last inside the call, so that the one place
that moves Flax outputs back to torch's layout (pytest_parity.run.sides) moves them back.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any

from pytest_parity.errors import ParityError
from pytest_parity.layouts import Layout
from pytest_parity.nnx_bridge import NNXPort

# The attribute a wrapped class keeps its original in (a second wrapping replaces the first).
_WRAPPED = "__parity_wrapped__"


def plain_outputs(output: Any) -> Any:
    """A model's output as a plain tree: mappings (ModelOutput) and dataclasses as dicts of
    their fields that are not None, namedtuples as tuples; arrays as they are."""
    if isinstance(output, Mapping):
        return {key: plain_outputs(value) for key, value in output.items() if value is not None}
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return {field.name: plain_outputs(getattr(output, field.name))
                for field in dataclasses.fields(output)
                if getattr(output, field.name) is not None}
    if isinstance(output, list):
        return [plain_outputs(value) for value in output]
    if isinstance(output, tuple):  # namedtuples too: the comparisons see tuples
        return tuple(plain_outputs(value) for value in output)
    return output


def _original(cls: type) -> Any:
    return getattr(cls, _WRAPPED, cls)


def kept(output: Any, keep: frozenset[str] | None) -> Any:
    """A model's output with only the named outputs in `keep` (None: all of them)."""
    if keep is None or not isinstance(output, Mapping):
        return output
    return {key: value for key, value in output.items() if key in keep and value is not None}


def torch_called_with(model: Any, arguments: Mapping[str, Any],
                      keep: frozenset[str] | None = None) -> Any:
    """The torch model (changed in place), its forward called with `arguments` (the caller's
    keywords win), returning only the outputs in `keep` where given."""
    if not arguments and keep is None:
        return model
    original = _original(type(model))
    defaults = dict(arguments)

    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        return kept(original.forward(self, *args, **{**defaults, **kwargs}), keep)

    model.__class__ = type(original.__name__, (original,), {
        "forward": forward, _WRAPPED: original, "__module__": original.__module__,
        "__qualname__": original.__qualname__})
    return model


def signature_target(function: Any) -> Any:
    """What a call's signature is read from: a torch module's own forward (the original one
    where the module is called with a pair's flags), else the function."""
    forward = getattr(function, "forward", function)
    original = getattr(type(function), _WRAPPED, None)
    return types.MethodType(original.forward, function) if original is not None else forward


def _moved_channels_last(output: Any, layouts: Mapping[str, Layout], rank: int) -> Any:
    """The outputs named in `layouts` as Layout.SAME ("*": every output), each of their
    arrays moved channels-last where it has the input's rank (so that the way back to
    torch's layout restores it); an output tuple's parts are named by position.

    Raises:
        ParityError: a name in `layouts` that is no output of the model.
    """
    import jax
    import jax.numpy as jnp

    def moved(name: str, value: Any) -> Any:
        if layouts.get(name, layouts.get("*")) is not Layout.SAME:
            return value
        return jax.tree_util.tree_map(
            lambda leaf: jnp.moveaxis(leaf, 1, -1) if getattr(leaf, "ndim", None) == rank
            else leaf, value)

    named = (plain_outputs(output) if isinstance(output, Mapping) else
             dict(enumerate(output)) if isinstance(output, tuple) else {"": output})
    unknown = sorted(set(layouts) - {"*"} - {str(key) for key in named})
    if unknown:
        raise ParityError(f"output_layout names {', '.join(map(repr, unknown))}, "
                          "which the Flax side does not return (its outputs: "
                          f"{', '.join(repr(str(key)) for key in named) or 'one array'})")
    if isinstance(output, Mapping):
        return {key: moved(str(key), value) for key, value in named.items()}
    if isinstance(output, tuple):
        return tuple(moved(str(index), value) for index, value in named.items())
    return moved("", output)


def flax_called_with(module: Any, arguments: Mapping[str, Any],
                     output_layouts: Mapping[str, Layout] | None = None,
                     keep: frozenset[str] | None = None) -> Any:
    """The Flax module (Linen, or NNX behind NNXPort), called with `arguments` (the caller's
    keywords win), its outputs named in `output_layouts` held to that layout ('' names a single
    output, "*" every output), only the outputs in `keep` returned where given."""
    layouts = dict(output_layouts or {})
    if not arguments and not layouts and keep is None:
        return module
    if isinstance(module, NNXPort):
        return CalledNNXPort(module.module, defaults=dict(arguments), layouts=layouts,
                             keep=keep)
    original = _original(type(module))
    defaults = dict(arguments)

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        output = kept(original.__call__(self, *args, **{**defaults, **kwargs}), keep)
        return _moved_channels_last(output, layouts, _rank(args, kwargs)) if layouts else output

    wrapped = type(original.__name__, (original,), {
        "__call__": __call__, _WRAPPED: original, "__module__": original.__module__,
        "__qualname__": original.__qualname__})
    fields = {field.name: getattr(module, field.name) for field in dataclasses.fields(module)
              if field.init and field.name not in ("parent", "name")}
    return wrapped(**fields)


def _rank(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """The inputs' highest rank (an image batch's): outputs of that rank are feature maps."""
    return max((getattr(value, "ndim", 0) for value in (*args, *kwargs.values())), default=0)


class CalledNNXPort(NNXPort):
    """An NNX port called with keyword arguments of its own, its outputs held to layouts."""

    def __init__(self, module: Any, *, defaults: dict[str, Any], layouts: dict[str, Layout],
                 keep: frozenset[str] | None = None) -> None:
        super().__init__(module)
        self.defaults, self.layouts, self.keep = defaults, layouts, keep

    def apply(self, variables: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        output = kept(super().apply(variables, *args, **{**self.defaults, **kwargs}), self.keep)
        return _moved_channels_last(output, self.layouts, _rank(args, kwargs)) \
            if self.layouts else output

    def clone(self, *, dtype: Any) -> NNXPort:
        """As NNXPort's, kept per dtype, called as this one is."""
        key = ("called", dtype)
        if key not in self._in_dtype:
            self._in_dtype[key] = CalledNNXPort(super().clone(dtype=dtype).module,
                                                defaults=self.defaults, layouts=self.layouts,
                                                keep=self.keep)
        return self._in_dtype[key]


def wrapped_module(flax_model: Any) -> Any:
    """The Linen module inside a library's model object that holds a module and its
    parameters (transformers' FlaxBertModel: `.module`, `.params`); anything else as it is."""
    inner = getattr(flax_model, "module", None)
    if inner is not None and hasattr(flax_model, "params") and hasattr(inner, "apply"):
        return inner
    return flax_model


# The option that turns an output off, for the outputs libraries return when asked to (or by
# default: transformers' GPT-2 returns its cache unless use_cache=False).
_OPTION_OF = {"past_key_values": "use_cache", "hidden_states": "output_hidden_states",
              "attentions": "output_attentions", "cross_attentions": "output_attentions"}


class OneSidedOutputs(ParityError):
    """Outputs one side returns and the other does not, where the pair compares them all."""


def _one_sided_line(name: str, side: str, other: str) -> str:
    option = _OPTION_OF.get(name)
    turn_off = (f"turn it off where it is made (Pair({side}_call={{{option!r}: False}}))"
                if option else f"make the {other} side return it too")
    return f"{side} returns {name!r}, the {other} side does not: {turn_off}"


def outputs_both_return(flax_out: Any, torch_out: Any, outputs: str, owner: str
                        ) -> tuple[Any, Any]:
    """(Flax's, torch's) outputs as they are compared: with `outputs="common"` the named
    outputs both sides return; with "all", every output, one that only one side returns being
    an error that says which option to set.

    Raises:
        OneSidedOutputs: naming each one-sided output and the option that turns it off.
    """
    if not (isinstance(flax_out, dict) and isinstance(torch_out, dict)) \
            or flax_out.keys() == torch_out.keys():
        return flax_out, torch_out
    if outputs == "common":
        return ({key: value for key, value in flax_out.items() if key in torch_out},
                {key: value for key, value in torch_out.items() if key in flax_out})
    lines = [_one_sided_line(str(key), "torch", "Flax") for key in torch_out
             if key not in flax_out]
    lines += [_one_sided_line(str(key), "flax", "torch") for key in flax_out
              if key not in torch_out]
    raise OneSidedOutputs(f"{owner}: the two sides return different outputs\n  "
                          + "\n  ".join(lines) + "\n  or compare only the outputs both "
                          "return: Pair(outputs='common')")
