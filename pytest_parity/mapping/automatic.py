"""Automatic weight mapping for a torch module and its Flax port, without a table.

Both models are listed as layers of known kinds, in order: torch's in registration order
(`named_modules`), Flax's in call order (recorded while `jax.eval_shape` traces a Linen module's
`init`, or an NNX module's call on variables of its shapes, so nothing is initialised). An NNX
side (a module, concrete or abstract, an NNXPort, or a factory) is seen through
pytest_parity.nnx_bridge: its Param and BatchStat variables at `params/<path>` and
`batch_stats/<path>`, so a Linen and an NNX port of one tree get the same mapping.
Layers pair up kind by kind, in order, and each pair's rules come from
pytest_parity.mapping.layer_rules, so an automatic mapping is the same `Mapping` a table would be.
Every pair's shapes are checked under its layout transform, and the layers' names check the
order (pytest_parity.mapping.pairing). A mismatch, or a kind whose counts differ, fails with
the unpaired layers of both sides and a hint to resolve it: `hints=[("downsample",
"shortcut")]` pairs torch layers whose name has `downsample` only with Flax layers whose path
has `shortcut`; `torch_only=("pooler",)` leaves torch's pooler out of the pairing (its tensors
are kept as torch-only rules), `flax_only` the same on the Flax side. Registered torch buffers
in no layer are torch-only rules; other tensors of no known kind (a bare class token) are
given as `extra_rules`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from pytest_parity.errors import PREFIX
from pytest_parity.mapping.nnx_calls import called_in_order
from pytest_parity.mapping.pairing import RULES_OF_KIND, Layer, pair_group
from pytest_parity.mapping.rule import MappingError, ParityMappingWarning, Rule
from pytest_parity.mapping.rules import Mapping, flatten
from pytest_parity.nnx_bridge import NNXPort, as_port, is_nnx_module, port

__all__ = ["FLAX_KINDS", "RULES_OF_KIND", "TORCH_KINDS", "Layer", "automatic_mapping",
           "flax_layers", "flax_side_of", "torch_layers"]

# torch class name -> kind; Flax class name -> kind, Linen's and NNX's (subclasses are looked up
# by their MRO).
TORCH_KINDS = {
    "Conv1d": "conv", "Conv2d": "conv", "Conv3d": "conv",
    "ConvTranspose1d": "conv_transpose", "ConvTranspose2d": "conv_transpose",
    "Linear": "linear", "LayerNorm": "layer_norm", "GroupNorm": "group_norm",
    "BatchNorm1d": "batch_norm", "BatchNorm2d": "batch_norm", "BatchNorm3d": "batch_norm",
    "Embedding": "embedding", "MultiheadAttention": "attention",
}
FLAX_KINDS = {
    "Conv": "conv", "ConvTranspose": "conv_transpose", "Dense": "linear",
    "LayerNorm": "layer_norm", "GroupNorm": "group_norm", "BatchNorm": "batch_norm",
    "Embed": "embedding", "MultiHeadDotProductAttention": "attention",
    "Linear": "linear", "MultiHeadAttention": "attention",  # NNX's names
}


def _kind(cls: type, kinds: dict[str, str]) -> str | None:
    return next((kinds[c.__name__] for c in cls.__mro__ if c.__name__ in kinds), None)


def torch_layers(model: Any) -> tuple[list[Layer], list[str]]:
    """The torch model's layers of known kinds, and the state-dict keys no such layer holds."""
    state = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    layers: list[Layer] = []
    covered: set[str] = set()
    for name, module in model.named_modules():
        kind = _kind(type(module), TORCH_KINDS)
        if kind is None or any(name.startswith(f"{layer.name}.") for layer in layers
                               if layer.kind == "attention"):
            continue
        prefix = f"{name}." if name else ""
        shapes = {key: shape for key, shape in state.items() if key.startswith(prefix)
                  and (kind == "attention" or "." not in key[len(prefix):])}
        if not shapes:
            continue  # e.g. LayerNorm without affine parameters
        options = {"transpose_kernel": None}
        if kind == "attention":
            options = {"num_heads": module.num_heads, "embed_dim": module.embed_dim}
            if getattr(module, "in_proj_weight", None) is None:
                raise MappingError(f"{PREFIX} automatic mapping: torch {name} "
                                   "(MultiheadAttention) keeps separate q/k/v projections "
                                   "(kdim/vdim != embed_dim); give its rules as extra_rules")
        layers.append(Layer(name, kind, type(module).__name__, shapes, options))
        covered.update(shapes)
    return layers, [key for key in state if key not in covered]


def _holds(layer: str, path: str, nested: bool) -> bool:
    """Whether a variable's path (without its collection) belongs to the layer: directly, or
    (`nested`: attention's query/key/value/out) anywhere below it."""
    if not nested:
        return path.rpartition("/")[0] == layer
    return path.startswith(f"{layer}/") if layer else True


def flax_side_of(flax_module: Any) -> Any:
    """The Flax side as it is traced: a Linen module as it is; an NNX module (concrete or
    abstract) or an NNX factory behind pytest_parity.nnx_bridge.NNXPort."""
    import flax.linen as nn

    if isinstance(flax_module, (nn.Module, NNXPort)):
        return flax_module
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
    (arrays or jax.ShapeDtypeStruct), and the variables no such layer holds. `module`: a Linen
    module, or an NNX one as flax_side_of takes it."""
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
        options = {"transpose_kernel": getattr(bound, "transpose_kernel", None)}
        layers.append(Layer(name, kind, type(bound).__name__, shapes, options))
        covered.update(shapes)
    return layers, [key for key in flat if key not in covered]


def _grouped(layers: list[Layer], hints: Sequence[tuple[str, str]], side: int
             ) -> list[list[Layer]]:
    """The layers of each hint (their name holds the hint's part for this side), then the
    rest."""
    groups: list[list[Layer]] = [[] for _ in range(len(hints) + 1)]
    for layer in layers:
        index = next((i for i, hint in enumerate(hints) if hint[side] in layer.name),
                     len(hints))
        groups[index].append(layer)
    return groups


def _named_in(name: str, parts: Sequence[str]) -> bool:
    return any(part in name for part in parts)


def _torch_only(torch_model: Any, layers: list[Layer], rest: list[str], parts: Sequence[str],
                extra: Mapping) -> tuple[list[Layer], list[str], list[Rule]]:
    """Set aside what only torch keeps, as torch-only rules (the tensor as torch has it, at
    the key's path): the tensors of layers (or in no layer) whose names hold one of `parts`,
    and registered buffers in no layer. The layers and tensors left to pair, and the rules."""
    keys = [key for layer in layers if _named_in(layer.name, parts) for key in layer.shapes
            if extra.rule_for(key, "torch") is None]
    keys += [key for key in rest if _named_in(key, parts)]
    buffers = {name for name, _ in torch_model.named_buffers()}
    rules = [Rule(key.replace(".", "/"), key, "torch", collection=None) for key in keys]
    rules += [Rule(key.replace(".", "/"), key, "buffer", collection=None)
              for key in rest if key in buffers and key not in keys]
    taken = {rule.torch for rule in rules}
    return ([layer for layer in layers if not _named_in(layer.name, parts)],
            [key for key in rest if key not in taken], rules)


def _flax_only(layers: list[Layer], rest: list[str], parts: Sequence[str], extra: Mapping
               ) -> tuple[list[Layer], list[str], list[str]]:
    """Set aside the Flax variables of layers (or in no layer) whose names hold one of `parts`:
    the layers and variables left to pair, and the Flax-only variables."""
    paths = [path for layer in layers if _named_in(layer.name, parts) for path in layer.shapes
             if extra.rule_for(path.partition("/")[2]) is None]
    paths += [path for path in rest if _named_in(path, parts)]
    return ([layer for layer in layers if not _named_in(layer.name, parts)],
            [path for path in rest if path not in paths], paths)


def automatic_mapping(torch_model: Any, flax_module: Any, *flax_inputs: Any,
                      hints: Sequence[tuple[str, str]] = (),
                      extra_rules: Sequence[Rule] = (), torch_only: Sequence[str] = (),
                      flax_only: Sequence[str] = (), name: str | None = None,
                      **flax_kwargs: Any) -> Mapping:
    """The mapping between a torch model (its meta-device build is enough) and a Flax module
    traced on `flax_inputs` (shapes suffice: jax.ShapeDtypeStruct). The Flax module: Linen,
    or NNX (a module, concrete or abstract, an NNXPort, or a factory building one).

    Args:
        hints: (torch name part, Flax name part): layers whose names hold them pair only
            with each other.
        extra_rules: rules for tensors in no layer of a known kind; they come first.
        torch_only: name parts of torch layers (or tensors) the Flax model lacks: their
            tensors become torch-only rules (kept in canonical checkpoints, never in Flax).
        flax_only: name parts of Flax layers (or variables) torch lacks: listed as the
            mapping's `flax_only` variables.

    Raises:
        MappingError: layers that cannot be paired (listing both sides and a hint), or
            tensors that no layer of a known kind holds and no extra rule accounts for.

    Warns:
        ParityMappingWarning: layers paired by name where the order would pair them otherwise.
    """
    flax_module = flax_side_of(flax_module)
    flax_name = flax_module.name if isinstance(flax_module, NNXPort) else \
        type(flax_module).__name__
    architecture = name or f"auto:{type(torch_model).__name__}->{flax_name}"
    torch_side, torch_rest = torch_layers(torch_model)
    flax_side, flax_rest = flax_layers(flax_module, *flax_inputs, **flax_kwargs)
    extra = Mapping(architecture, tuple(extra_rules))
    torch_rest = [key for key in torch_rest if extra.rule_for(key, "torch") is None]
    flax_rest = [path for path in flax_rest
                 if extra.rule_for(path.partition("/")[2]) is None]
    torch_side, torch_rest, one_sided = _torch_only(torch_model, torch_side, torch_rest,
                                                    torch_only, extra)
    flax_side, flax_rest, flax_paths = _flax_only(flax_side, flax_rest, flax_only, extra)
    problems: list[str] = []
    rules, swaps = list(extra_rules), []
    all_names = ([layer.name for layer in torch_side], [layer.name for layer in flax_side])
    for torch_group, flax_group in zip(_grouped(torch_side, hints, 0),
                                       _grouped(flax_side, hints, 1), strict=True):
        pairing = pair_group(torch_group, flax_group, all_names)
        rules += pairing.rules
        problems += pairing.problems
        swaps += pairing.swaps
    if torch_rest:
        problems.append(f"  torch tensors in no layer of a known kind: {', '.join(torch_rest)}")
    if flax_rest:
        problems.append(f"  Flax variables in no layer of a known kind: {', '.join(flax_rest)}")
    if torch_rest or flax_rest:
        problems.append("    give their rules as extra_rules=[Rule(canonical path, torch key, "
                        "layout)]")
    if problems:
        raise MappingError(f"{PREFIX} automatic mapping {architecture}: cannot pair the two "
                           "models unambiguously\n" + "\n".join(problems))
    if swaps:
        warnings.warn(f"{PREFIX} automatic mapping {architecture}: paired by name where the "
                      "order (torch's registration, Flax's calls) says otherwise:\n  "
                      + "\n  ".join(swaps), ParityMappingWarning, stacklevel=2)
    return Mapping(architecture, (*rules, *one_sided), flax_only=tuple(flax_paths))
