"""Pairing a group's torch layers with its Flax layers: by order and shape, checked by name.

Layers of a kind pair up in the order both sides call them, each pair's
shapes checked under its layout transform. Then the names check the result
(pytest_parity.mapping.names): when they pair every layer of the kind one to one, each pair's
shapes fit, and each pair that differs from the order shares a distinguishing token that its
order partners lack (a Flax module that calls `key` before `query`), the names win and each
swap is reported. What cannot be paired is listed, with a hint made of real parts of the
unpaired layers' names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_parity.mapping import layer_rules
from pytest_parity.mapping.names import NameMatch, distinct_part
from pytest_parity.mapping.rule import Rule
from pytest_parity.mapping.transforms import Chain, Flip, Identity, Reshape, Transpose


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


def _batch_norm_rules(t: Layer, f: Layer) -> list[Rule]:
    """BatchNorm's rules for the tensors this torch layer has (num_batches_tracked may lack)."""
    return [rule for rule in layer_rules.batch_norm_rules(t.name, f.name, affine=t.has("weight"))
            if rule.torch in t.shapes]


# kind -> the rules between a torch layer and a Flax layer of that kind (layer_rules has them).
RULES_OF_KIND: dict[str, Callable[[Layer, Layer], list[Rule]]] = {
    "conv": lambda t, f: layer_rules.conv_rules(t.name, f.name, bias=t.has("bias")),
    "conv_transpose": lambda t, f: layer_rules.conv_transpose_rules(
        t.name, f.name, bias=t.has("bias"), transpose_kernel=bool(f.options["transpose_kernel"])),
    "linear": lambda t, f: layer_rules.linear_rules(
        t.name, f.name, bias=t.has("bias"), torch_kernel=t.options.get("kernel", "OI"),
        flax_kernel=f.options.get("kernel", "IO")),
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


Keep = Callable[[Rule], bool]  # which of a layer's rules to keep (extra rules replace others)


def _keep_all(rule: Rule) -> bool:
    return True


def _rules_of(kind: str, t: Layer, f: Layer, keep: Keep) -> list[Rule]:
    return [rule for rule in RULES_OF_KIND[kind](t, f) if keep(rule)]


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


def _suggested_hint(torch_layer: Layer, flax_layer: Layer) -> str:
    """A hint from the last part of each name that the other name lacks; where every part is
    shared, the whole name (which tells the two apart)."""
    torch_parts = [t for t in _tokens(torch_layer.name) if t not in _tokens(flax_layer.name)]
    flax_parts = [t for t in _tokens(flax_layer.name) if t not in _tokens(torch_layer.name)]
    pair = (torch_parts[-1] if torch_parts else torch_layer.name,
            flax_parts[-1] if flax_parts else flax_layer.name)
    return f"hints=[{pair!r}]"


@dataclass
class Pairing:
    """A group's rules, its problem lines (empty when every layer is paired), and the pairs
    made by name rather than by order."""

    rules: list[Rule] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    swaps: list[str] = field(default_factory=list)


def _in_order(kind: str, torch_of: list[Layer], flax_of: list[Layer], keep: Keep
              ) -> tuple[list[tuple[Layer, Layer]], str]:
    """Pairs in order up to the first whose shapes differ, and the problem ('' when none)."""
    pairs: list[tuple[Layer, Layer]] = []
    for t, f in zip(torch_of, flax_of, strict=False):
        mismatch = _shape_problems(_rules_of(kind, t, f, keep), t, f)
        if mismatch:
            return pairs, (f"  {kind}: torch {t.label} and Flax {f.label} are next in order "
                           f"but differ: {'; '.join(mismatch)}")
        pairs.append((t, f))
    if len(torch_of) > len(flax_of):
        return pairs, f"  {kind}: torch has {len(torch_of) - len(flax_of)} more than Flax"
    if len(flax_of) > len(torch_of):
        return pairs, f"  {kind}: Flax has {len(flax_of) - len(torch_of)} more than torch"
    return pairs, ""


def _by_name(kind: str, torch_of: list[Layer], flax_of: list[Layer], keep: Keep
             ) -> list[tuple[Layer, Layer]] | None:
    """The pairs the names make, in torch's order; None unless they pair every layer one to
    one, each pair's shapes fit, and each pair that the order would not make is told apart."""
    if len(torch_of) != len(flax_of) or len(torch_of) < 2:
        return None
    match = NameMatch([layer.name for layer in torch_of], [layer.name for layer in flax_of])
    partners = match.partners()
    if len(partners) != len(torch_of):
        return None
    for t, f in partners.items():
        # In order, torch layer t would pair with Flax layer t, and Flax layer f with torch f.
        if f != t and not match.tells_apart(t, f, other_flax=t, other_torch=f):
            return None
        if _shape_problems(_rules_of(kind, torch_of[t], flax_of[f], keep), torch_of[t],
                           flax_of[f]):
            return None
    return [(torch_of[t], flax_of[f]) for t, f in sorted(partners.items())]


def _left_out(bigger: list[Layer], smaller: list[Layer], remainder: list[Layer], side: int
              ) -> list[Layer]:
    """The layers of the side with more that have no counterpart: those the names leave
    unpaired when they pair every layer of the other side, else the order's remainder."""
    names = ([layer.name for layer in bigger], [layer.name for layer in smaller])
    partners = NameMatch(*(names if side == 0 else names[::-1])).partners()
    paired = set(partners) if side == 0 else set(partners.values())
    if len(paired) != len(smaller):
        return remainder
    return [layer for index, layer in enumerate(bigger) if index not in paired]


def _hint(torch_of: list[Layer], flax_of: list[Layer], torch_left: list[Layer],
          flax_left: list[Layer], all_names: tuple[Sequence[str], Sequence[str]]) -> str:
    """What would resolve a kind's unpaired layers, in real parts of their names."""
    if torch_left and flax_left:
        return "    resolve it by name: " + _suggested_hint(torch_left[0], flax_left[0])
    side = 0 if torch_left else 1
    bigger, smaller = (torch_of, flax_of) if side == 0 else (flax_of, torch_of)
    extra = _left_out(bigger, smaller, torch_left or flax_left, side)
    extra_names = {layer.name for layer in extra}
    others = [name for name in all_names[side] if name not in extra_names]
    parts = list(dict.fromkeys(distinct_part(layer.name, others) for layer in extra))
    own, other = ("torch", "Flax") if side == 0 else ("flax", "torch")
    labels = ", ".join(layer.label for layer in extra)
    return f"    if {other} has no {labels}, leave it out: {own}_only={parts!r}"


def pair_group(torch_group: list[Layer], flax_group: list[Layer],
               all_names: tuple[Sequence[str], Sequence[str]], keep: Keep = _keep_all
               ) -> Pairing:
    """Pair a group's layers kind by kind (`all_names`: every torch and Flax layer's name, which
    a hint's name parts must tell apart; `keep`: which rules to make, the others being given
    as extra rules)."""
    result = Pairing()
    for kind in dict.fromkeys(layer.kind for layer in torch_group + flax_group):
        torch_of = [layer for layer in torch_group if layer.kind == kind]
        flax_of = [layer for layer in flax_group if layer.kind == kind]
        pairs, problem = _in_order(kind, torch_of, flax_of, keep)
        named = _by_name(kind, torch_of, flax_of, keep) or []
        swaps = [f"torch {t.label} pairs with Flax {f.label} by name, not "
                 f"{flax_of[index].label} by order"
                 for index, (t, f) in enumerate(named) if f is not flax_of[index]]
        if named and (problem or swaps):
            result.swaps += swaps
            pairs, problem = named, ""
        result.rules += [rule for t, f in pairs for rule in _rules_of(kind, t, f, keep)]
        if problem:
            torch_left, flax_left = torch_of[len(pairs):], flax_of[len(pairs):]
            result.problems += [
                problem, *(f"    unpaired torch: {layer.describe()}" for layer in torch_left),
                *(f"    unpaired Flax: {layer.describe()}" for layer in flax_left),
                _hint(torch_of, flax_of, torch_left, flax_left, all_names)]
    return result
