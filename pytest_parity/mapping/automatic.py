"""Automatic weight mapping for a torch module and its Flax port, without a table.

Both models are listed as layers of known kinds, in order: torch's in registration order
(`named_modules`), Flax's in call order (recorded while `jax.eval_shape` traces `init`, so
nothing is initialised). Layers pair up kind by kind, in order, and each pair's rules come from
pytest_parity.mapping.layer_rules, so an automatic mapping is the same `Mapping` a table would be.
Every pair's shapes are checked under its layout transform; a mismatch, or a kind whose
counts differ, fails with the unpaired layers of both sides and a hint to resolve it:
`hints=[("downsample", "shortcut")]` pairs torch layers whose name has `downsample` only with
Flax layers whose path has `shortcut`. Tensors of layers of no known kind (a bare class token)
are given as `extra_rules`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_parity.errors import PREFIX
from pytest_parity.mapping import layer_rules
from pytest_parity.mapping.rules import Mapping, MappingError, Rule, flatten
from pytest_parity.mapping.transforms import Chain, Flip, Identity, Reshape, Transpose

# torch class name -> kind; Flax class name -> kind (subclasses are looked up by their MRO).
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
}


@dataclass
class Layer:
    """One layer of a known kind: its name (torch: dotted; Flax: '/'-joined path), and the
    shapes of its tensors (torch: by state-dict key; Flax: by 'collection/path')."""

    name: str
    kind: str
    type_name: str
    shapes: dict[str, tuple[int, ...]]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or "(root)"

    def has(self, tensor: str) -> bool:
        """Whether a torch layer holds a tensor of this name (`bias`, `weight`...)."""
        return any(key.rpartition(".")[2] == tensor for key in self.shapes)

    def describe(self) -> str:
        tensors = ", ".join(f"{key.rpartition('/' if '/' in key else '.')[2]} {shape}"
                            for key, shape in self.shapes.items())
        return f"{self.label} ({self.type_name}: {tensors})"


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


def flax_layers(module: Any, *inputs: Any, **kwargs: Any) -> tuple[list[Layer], list[str]]:
    """The Flax module's layers of known kinds in call order, from `jax.eval_shape` of its
    init on `inputs` (arrays or jax.ShapeDtypeStruct), and the variables no such layer holds."""
    import flax.linen as nn
    import jax

    called: dict[tuple[str, ...], Any] = {}

    def record(next_fun: Callable[..., Any], args: Any, kw: Any, context: Any) -> Any:
        if context.method_name == "__call__":
            called.setdefault(tuple(context.module.path), context.module)
        return next_fun(*args, **kw)

    with nn.intercept_methods(record):
        variables = jax.eval_shape(
            lambda *xs: module.init(jax.random.key(0), *xs, **kwargs), *inputs)
    flat = {path: tuple(value.shape) for path, value in flatten(variables).items()}
    layers: list[Layer] = []
    covered: set[str] = set()
    for path, bound in called.items():
        kind = _kind(type(bound), FLAX_KINDS)
        name = "/".join(path)
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


def _batch_norm_rules(t: Layer, f: Layer) -> list[Rule]:
    """BatchNorm's rules for the tensors this torch layer has (num_batches_tracked may lack)."""
    return [rule for rule in layer_rules.batch_norm_rules(t.name, f.name, affine=t.has("weight"))
            if rule.torch in t.shapes]


# kind -> the rules between a torch layer and a Flax layer of that kind (layer_rules has them).
RULES_OF_KIND: dict[str, Callable[[Layer, Layer], list[Rule]]] = {
    "conv": lambda t, f: layer_rules.conv_rules(t.name, f.name, bias=t.has("bias")),
    "conv_transpose": lambda t, f: layer_rules.conv_transpose_rules(
        t.name, f.name, bias=t.has("bias"), transpose_kernel=bool(f.options["transpose_kernel"])),
    "linear": lambda t, f: layer_rules.linear_rules(t.name, f.name, bias=t.has("bias")),
    "layer_norm": lambda t, f: layer_rules.norm_rules(t.name, f.name, scale=t.has("weight"),
                                                      bias=t.has("bias")),
    "group_norm": lambda t, f: layer_rules.norm_rules(t.name, f.name, scale=t.has("weight"),
                                                      bias=t.has("bias")),
    "batch_norm": _batch_norm_rules,
    "embedding": lambda t, f: layer_rules.embedding_rules(t.name, f.name),
    "attention": lambda t, f: layer_rules.attention_rules(
        t.name, f.name, num_heads=t.options["num_heads"], embed_dim=t.options["embed_dim"],
        bias=t.has("in_proj_bias")),
}


def _transformed(shape: tuple[int, ...], transform: Any) -> tuple[int, ...]:
    """The shape a transform turns `shape` into (without touching any data)."""
    if isinstance(transform, Chain):
        for step in transform.steps:
            shape = _transformed(shape, step)
        return shape
    if isinstance(transform, Transpose):
        return tuple(shape[axis] for axis in transform.perm)
    if isinstance(transform, Reshape):
        axis = transform.axis % len(shape)
        return shape[:axis] + transform.sizes + shape[axis + 1:]
    assert isinstance(transform, (Identity, Flip))
    return shape


def _shape_problems(rules: list[Rule], torch_layer: Layer, flax_layer: Layer) -> list[str]:
    problems = []
    for rule in rules:
        shape = torch_layer.shapes.get(rule.torch)
        if shape is None:
            problems.append(f"torch {rule.torch}: missing")
            continue
        if rule.split is not None:
            shape = (*shape[:rule.split.axis], shape[rule.split.axis] // rule.split.parts,
                     *shape[rule.split.axis + 1:])
        for path in rule.canonical_paths:
            if rule.collection is None:
                continue
            expected = flax_layer.shapes.get(f"{rule.collection}/{path}")
            got = _transformed(shape, rule.transform)
            if expected != got:
                problems.append(f"torch {rule.torch} {shape} -> {got}, but Flax "
                                f"{rule.collection}/{path} is {expected}")
    return problems


def _tokens(name: str) -> list[str]:
    return [token for token in re.split(r"[./]", name) if token and not token.isdigit()]


def _suggested_hint(torch_layer: Layer | None, flax_layer: Layer | None) -> str:
    torch_only = [t for t in _tokens(torch_layer.name if torch_layer else "")
                  if flax_layer is None or t not in _tokens(flax_layer.name)]
    flax_only = [t for t in _tokens(flax_layer.name if flax_layer else "")
                 if torch_layer is None or t not in _tokens(torch_layer.name)]
    pair = (torch_only[-1] if torch_only else "torch_name_part",
            flax_only[-1] if flax_only else "flax_name_part")
    return f"hints=[{pair!r}]"


def _pair_group(torch_group: list[Layer], flax_group: list[Layer], problems: list[str]
                ) -> list[Rule]:
    """Pair layers kind by kind, in order; record what cannot be paired."""
    rules: list[Rule] = []
    kinds = list(dict.fromkeys(layer.kind for layer in torch_group + flax_group))
    for kind in kinds:
        torch_of = [layer for layer in torch_group if layer.kind == kind]
        flax_of = [layer for layer in flax_group if layer.kind == kind]
        for index, (t, f) in enumerate(zip(torch_of, flax_of, strict=False)):
            pair_rules = RULES_OF_KIND[kind](t, f)
            mismatch = _shape_problems(pair_rules, t, f)
            if mismatch:
                torch_of, flax_of = torch_of[index:], flax_of[index:]
                problems.append(f"  {kind}: torch {t.label} and Flax {f.label} are next in order "
                                f"but differ: {'; '.join(mismatch)}")
                break
            rules += pair_rules
        else:
            torch_of, flax_of = torch_of[len(flax_of):], flax_of[len(torch_of):]
            if torch_of or flax_of:
                problems.append(f"  {kind}: torch has {len(torch_of)} more than Flax"
                                if torch_of else f"  {kind}: Flax has {len(flax_of)} more than "
                                                 "torch")
        if torch_of or flax_of:
            problems += [f"    unpaired torch: {layer.describe()}" for layer in torch_of]
            problems += [f"    unpaired Flax: {layer.describe()}" for layer in flax_of]
            problems.append("    resolve it by name: "
                            + _suggested_hint(torch_of[0] if torch_of else None,
                                              flax_of[0] if flax_of else None))
    return rules


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


def automatic_mapping(torch_model: Any, flax_module: Any, *flax_inputs: Any,
                      hints: Sequence[tuple[str, str]] = (),
                      extra_rules: Sequence[Rule] = (), name: str | None = None,
                      **flax_kwargs: Any) -> Mapping:
    """The mapping between a torch model (its meta-device build is enough) and a Flax module
    traced on `flax_inputs` (shapes suffice: jax.ShapeDtypeStruct).

    Raises:
        MappingError: layers that cannot be paired (listing both sides and a hint), or
            tensors that no layer of a known kind holds and no extra rule accounts for.
    """
    architecture = name or f"auto:{type(torch_model).__name__}->{type(flax_module).__name__}"
    torch_side, torch_rest = torch_layers(torch_model)
    flax_side, flax_rest = flax_layers(flax_module, *flax_inputs, **flax_kwargs)
    problems: list[str] = []
    rules = list(extra_rules)
    for torch_group, flax_group in zip(_grouped(torch_side, hints, 0),
                                       _grouped(flax_side, hints, 1), strict=True):
        rules += _pair_group(torch_group, flax_group, problems)
    extra = Mapping(architecture, tuple(extra_rules))
    torch_rest = [key for key in torch_rest if extra.rule_for(key, "torch") is None]
    flax_rest = [path for path in flax_rest
                 if extra.rule_for(path.partition("/")[2]) is None]
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
    return Mapping(architecture, tuple(rules))
