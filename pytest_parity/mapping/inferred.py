"""Tensors in no layer of a known kind (a model's own RMSNorm weight, ViT's class token, a layer
scale), paired by name, shape and call order where that is unambiguous.

A torch tensor and a Flax variable fit when their shapes are equal, or equal under an obvious
transform (a matrix transposed, a convolution kernel OIHW -> HWIO), and their last names agree
(equal, or torch's `weight` for Flax's `scale`, `embedding` or `kernel`). A pair is made when
the rest of their names are the same (`layers.0.input_layernorm.weight` <->
`layers/0/input_layernorm/weight`); else when each is the other's only fit; else when, among
tensors that fit one another, the names pair them one to one and in call order. Each such
rule is marked `inferred`. What is left is listed with the rule that would fit it best.
"""

from __future__ import annotations

from pytest_parity.mapping.names import NameMatch
from pytest_parity.mapping.rule import Rule
from pytest_parity.mapping.transforms import OIHW_TO_HWIO, Identity, Transform, Transpose

_TAILS = {"weight": ("weight", "scale", "embedding", "kernel")}
_LAYOUTS = {Identity(): "same", Transpose((1, 0)): "IO", OIHW_TO_HWIO: "HWIO"}


def fitting_transform(torch_shape: tuple[int, ...], flax_shape: tuple[int, ...]
                      ) -> Transform | None:
    """The transform that turns a torch shape into a Flax shape: the identity where they are
    equal, else a matrix's transpose or a convolution kernel's OIHW -> HWIO; None if none."""
    if torch_shape == flax_shape:
        return Identity()
    for transform in (Transpose((1, 0)), OIHW_TO_HWIO):
        if len(transform.perm) == len(torch_shape) and \
                tuple(torch_shape[axis] for axis in transform.perm) == flax_shape:
            return transform
    return None


def _split(name: str, separator: str) -> tuple[str, str]:
    stem, _, tail = name.rpartition(separator)
    return stem.replace(".", "/"), tail


def _tails_agree(torch_key: str, flax_path: str) -> bool:
    torch_tail, flax_tail = _split(torch_key, ".")[1], _split(flax_path, "/")[1]
    return flax_tail in _TAILS.get(torch_tail, (torch_tail,))


def rule_for(torch_key: str, flax_path: str, transform: Transform, *, inferred: bool) -> Rule:
    """The rule between a torch key and a Flax variable ('collection/path')."""
    collection, _, path = flax_path.partition("/")
    return Rule(path, torch_key, _LAYOUTS.get(transform, "same"), collection,
                transform=transform, inferred=inferred)


def _fits(torch_shapes: dict[str, tuple[int, ...]], flax_shapes: dict[str, tuple[int, ...]]
          ) -> dict[str, dict[str, Transform]]:
    fits: dict[str, dict[str, Transform]] = {}
    for key, shape in torch_shapes.items():
        for path, flax_shape in flax_shapes.items():
            transform = fitting_transform(shape, flax_shape)
            if transform is not None and _tails_agree(key, path):
                fits.setdefault(key, {})[path] = transform
    return fits


def _by_names_in_order(keys: list[str], paths: list[str]) -> dict[str, str]:
    """Pairs the names make one to one, kept only where they agree with the call order."""
    if len(keys) != len(paths) or len(keys) < 2:
        return {}
    partners = NameMatch(keys, [path.partition("/")[2] for path in paths]).partners()
    if len(partners) != len(keys) or any(t != f for t, f in partners.items()):
        return {}
    return dict(zip(keys, paths, strict=True))


def infer_rules(torch_shapes: dict[str, tuple[int, ...]],
                flax_shapes: dict[str, tuple[int, ...]]) -> list[Rule]:
    """Inferred rules for the torch tensors (key -> shape) and Flax variables
    ('collection/path' -> shape) that no layer holds, both in call order."""
    fits = _fits(torch_shapes, flax_shapes)
    paired: dict[str, str] = {}
    for key, candidates in fits.items():
        same = [path for path in candidates
                if _split(path.partition("/")[2], "/")[0] == _split(key, ".")[0]]
        if len(same) == 1:
            paired[key] = same[0]
    changed = True
    while changed:
        changed = False
        open_fits = {key: [path for path in fitting if path not in paired.values()]
                     for key, fitting in fits.items() if key not in paired}
        for key, remaining in open_fits.items():
            rivals = [other for other, theirs in open_fits.items()
                      if remaining and remaining[0] in theirs]
            if len(remaining) == 1 and rivals == [key]:
                paired[key], changed = remaining[0], True
                break
        else:
            keys = [key for key in open_fits if open_fits[key]]
            paths = [path for path in flax_shapes
                     if any(path in open_fits[key] for key in keys)]
            paired.update(_by_names_in_order(keys, paths))
    return [rule_for(key, path, fits[key][path], inferred=True) for key, path in paired.items()]


def suggested_rules(torch_shapes: dict[str, tuple[int, ...]],
                    flax_shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """For each unpaired torch tensor (in call order), the rule that would pair it with the
    Flax variable not yet proposed that its shape fits and its name matches best (with the
    transform the shapes need)."""
    suggestions, used = [], set()
    for key, shape in torch_shapes.items():
        candidates = {path: transform for path, flax_shape in flax_shapes.items()
                      if path not in used
                      and (transform := fitting_transform(shape, flax_shape)) is not None}
        if not candidates:
            continue
        paths = list(candidates)
        scores = NameMatch([key], [path.partition("/")[2] for path in paths]).scores[0]
        best = paths[max(range(len(paths)), key=scores.__getitem__)]
        used.add(best)
        rule = rule_for(key, best, candidates[best], inferred=False)
        arguments = [repr(rule.canonical), repr(rule.torch), repr(rule.layout)]
        if rule.collection != "params":
            arguments.append(f"collection={rule.collection!r}")
        if not isinstance(rule.transform, Identity):
            arguments.append(f"transform={rule.transform!r}")
        suggestions.append(f"Rule({', '.join(arguments)})")
    return suggestions
