"""A pair's weight correspondence as data: rules of (canonical path, torch key, Flax path).

Rules take patterns: `layer{i}.{j}.conv1.weight` <-> `layer{i}/block{j}/conv1/kernel`, where each
`{name}` stands for a whole number and must appear on both sides. A rule's Flax path is its
collection (`params`, `batch_stats`) followed by the canonical path; a rule without a
collection is a buffer that only torch keeps (e.g. BatchNorm's `num_batches_tracked`), absent
from Flax variables. A fused rule maps one torch tensor to several canonical paths through a
`Split` (torch's `in_proj_weight` <-> Flax's query, key and value).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Mapping as MappingType
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from pytest_parity.errors import PREFIX, ParityError
from pytest_parity.mapping.transforms import Identity, Split, Transform
from pytest_parity.threads import thread_map

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class MappingError(ParityError):
    """Keys that no rule of a mapping accounts for, or a rule that is not well formed."""


def _pattern(template: str) -> re.Pattern[str]:
    """A template's regex: literal text, and each `{name}` a whole number."""
    parts = _PLACEHOLDER.split(template)
    regex = "".join(re.escape(part) if index % 2 == 0 else f"(?P<{part}>\\d+)"
                     for index, part in enumerate(parts))
    return re.compile(regex + r"\Z")


def _named(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _rule_problem(rule: Rule) -> str:
    """What makes a rule's fields unusable ('' when nothing does): each must say something."""
    paths = rule.canonical if isinstance(rule.canonical, tuple) else (rule.canonical,)
    if not paths or not all(_named(path) for path in paths):
        return "the canonical path must be a non-empty string (several: a non-empty tuple)"
    if len(set(paths)) != len(paths):
        return "a canonical path is listed twice (one piece would overwrite another)"
    if not _named(rule.torch):
        return "the torch key must be a non-empty string"
    if not _named(rule.layout):
        return "the layout must be a non-empty string, e.g. 'HWIO'"
    if rule.collection is not None and not _named(rule.collection):
        return "the collection must be a non-empty string ('params') or None (torch only)"
    if not isinstance(rule.transform, Transform):
        return f"the transform must be a transform, got {type(rule.transform).__name__}"
    if rule.split is not None and not (isinstance(rule.split, Split) and rule.split.parts >= 2):
        return "a split must be a Split into 2 or more parts"
    return ""


@dataclass(frozen=True)
class Rule:
    """One correspondence; `layout` is the canonical tensor's declared layout.

    `canonical` is one path, or several when `split` cuts the torch tensor into pieces; each
    piece then goes through `transform`.
    """

    canonical: str | tuple[str, ...]
    torch: str
    layout: str
    collection: str | None = "params"
    transform: Transform = field(default_factory=Identity)
    split: Split | None = None

    def __post_init__(self) -> None:
        where = f"{PREFIX} rule {self.torch!r} <-> {self.canonical!r}"
        problem = _rule_problem(self)
        if problem:
            raise MappingError(f"{where}: {problem}")
        fused = isinstance(self.canonical, tuple)
        if fused != (self.split is not None) or (
                self.split is not None and self.split.parts != len(self.canonical)):
            raise MappingError(f"{where}: several canonical paths need a Split into as many "
                               "parts, and a Split needs several canonical paths")
        names = set(_PLACEHOLDER.findall(self.torch))
        if any(set(_PLACEHOLDER.findall(path)) != names for path in self.canonical_paths):
            raise MappingError(f"{where}: the placeholders must be the same on both sides")

    @property
    def canonical_paths(self) -> tuple[str, ...]:
        return self.canonical if isinstance(self.canonical, tuple) else (self.canonical,)

    @cached_property
    def torch_pattern(self) -> re.Pattern[str]:
        return _pattern(self.torch)

    @cached_property
    def canonical_patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(_pattern(path) for path in self.canonical_paths)

    def to_canonical(self, array: np.ndarray) -> list[np.ndarray]:
        pieces = self.split.forward(array) if self.split else [array]
        return [self.transform.forward(piece) for piece in pieces]

    def to_torch(self, pieces: list[np.ndarray]) -> np.ndarray:
        restored = [self.transform.inverse(np.asarray(piece)) for piece in pieces]
        return self.split.inverse(restored) if self.split else restored[0]


def flatten(tree: MappingType[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict of arrays (Flax variables) as {'params/conv1/kernel': array}."""
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        if isinstance(value, MappingType):
            flat.update(flatten(value, f"{prefix}{name}/"))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def unflatten(flat: MappingType[str, Any]) -> dict[str, Any]:
    """The inverse of `flatten`."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        *groups, name = path.split("/")
        node = tree
        for group in groups:
            node = node.setdefault(group, {})
        node[name] = value
    return tree


@dataclass(frozen=True)
class Mapping:
    """The rules of one architecture: torch state dict <-> canonical arrays <-> Flax variables.

    Arrays are numpy arrays on every side; the frameworks' own types are made elsewhere.
    """

    architecture: str
    rules: tuple[Rule, ...]

    def __post_init__(self) -> None:
        # A second rule for the same key would never be used one way and collide the other.
        first: dict[tuple[str, str], int] = {}
        for index, rule in enumerate(self.rules):
            for side, key in (("torch key", rule.torch),
                              *(("canonical path", path) for path in rule.canonical_paths)):
                earlier = first.setdefault((side, key), index)
                if earlier != index:
                    raise MappingError(f"{PREFIX} {self.architecture}: rules {earlier} and "
                                       f"{index} both name the {side} {key!r}")

    def _match(self, key: str, side: str) -> tuple[Rule, int, dict[str, str]] | None:
        for rule in self.rules:
            patterns = (rule.torch_pattern,) if side == "torch" else rule.canonical_patterns
            for piece, pattern in enumerate(patterns):
                found = pattern.match(key)
                if found:
                    return rule, piece, found.groupdict()
        return None

    def rule_for(self, key: str, side: str = "canonical") -> Rule | None:
        """The rule that accounts for a canonical path (or, with side='torch', a torch key)."""
        found = self._match(key, side)
        return found[0] if found else None

    def _resolve(self, keys: Iterable[str], side: str
                 ) -> list[tuple[str, Rule, int, dict[str, str]]]:
        """Each key with its rule, piece and placeholder values; keys without a rule are listed."""
        resolved, unmatched = [], []
        for key in keys:
            found = self._match(key, side)
            if found is None:
                unmatched.append(key)
            else:
                resolved.append((key, *found))
        if unmatched:
            what = "torch keys" if side == "torch" else "canonical paths"
            raise MappingError(f"{PREFIX} {self.architecture}: {len(unmatched)} {what} have "
                               f"no rule: {', '.join(unmatched)}")
        return resolved

    def correspondence(self, torch_keys: Iterable[str]) -> dict[str, tuple[Any, ...]]:
        """What each torch key becomes: its canonical paths, layout, collection, transform and
        split. Two mappings that agree here convert the same state dicts the same way, however
        their rules are written (patterns or concrete keys)."""
        return {key: (tuple(path.format(**groups) for path in rule.canonical_paths),
                      rule.layout, rule.collection, rule.transform, rule.split)
                for key, rule, _, groups in self._resolve(torch_keys, "torch")}

    def describe(self) -> list[str]:
        """One line per rule: torch key -> canonical path(s) [layout, collection] transform."""
        lines = [f"mapping {self.architecture}: {len(self.rules)} rules"]
        for rule in self.rules:
            where = rule.collection or "torch only"
            pieces = f" split {rule.split}" if rule.split else ""
            lines.append(f"  {rule.torch} -> {', '.join(rule.canonical_paths)} "
                         f"[{rule.layout}, {where}] {rule.transform}{pieces}")
        return lines

    def torch_to_canonical(self, state: MappingType[str, np.ndarray]
                           ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Canonical arrays and their layouts from a torch state dict (as numpy arrays).

        Raises:
            MappingError: listing every torch key no rule accounts for.
        """
        resolved = self._resolve(state, "torch")
        # The transposes copy most of the model's bytes; numpy releases the GIL while copying.
        converted = thread_map(lambda item: item[1].to_canonical(np.asarray(state[item[0]])),
                               resolved)
        arrays, layouts = {}, {}
        for (_, rule, _, groups), pieces in zip(resolved, converted, strict=True):
            for path, array in zip(rule.canonical_paths, pieces, strict=True):
                arrays[path.format(**groups)] = array
                layouts[path.format(**groups)] = rule.layout
        return arrays, layouts

    def canonical_to_torch(self, arrays: MappingType[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A torch state dict (as numpy arrays) from canonical arrays.

        Raises:
            MappingError: listing every canonical path no rule accounts for, and every piece
                of a fused tensor that is missing.
        """
        fused: dict[str, tuple[Rule, dict[str, str]]] = {}
        for _, rule, _, groups in self._resolve(arrays, "canonical"):
            fused.setdefault(rule.torch.format(**groups), (rule, groups))
        missing = []
        for key, (rule, groups) in fused.items():
            absent = [path.format(**groups) for path in rule.canonical_paths
                      if path.format(**groups) not in arrays]
            if absent:
                missing.append(f"{key} needs {', '.join(absent)}")
        if missing:
            raise MappingError(f"{PREFIX} {self.architecture}: fused tensors lack pieces: "
                               + "; ".join(missing))

        def to_torch(item: tuple[str, tuple[Rule, dict[str, str]]]) -> np.ndarray:
            rule, groups = item[1]
            return rule.to_torch([arrays[path.format(**groups)] for path in rule.canonical_paths])

        return dict(zip(fused, thread_map(to_torch, fused.items()), strict=True))

    def canonical_to_flax(self, arrays: MappingType[str, np.ndarray]) -> dict[str, Any]:
        """Nested Flax variables ({'params': ..., 'batch_stats': ...}) from canonical arrays.

        Buffers only torch keeps (rules without a collection) are left out.
        """
        flat = {}
        for path, rule, _, _ in self._resolve(arrays, "canonical"):
            if rule.collection is not None:
                flat[f"{rule.collection}/{path}"] = arrays[path]
        return unflatten(flat)

    def flax_to_canonical(self, variables: MappingType[str, Any]
                          ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Canonical arrays and layouts from Flax variables (nested dicts of arrays).

        Raises:
            MappingError: a variable that no rule accounts for, or one in the wrong collection.
        """
        by_path: dict[str, tuple[str, Any]] = {}
        misplaced = []
        for flax_path, value in flatten(variables).items():
            collection, _, path = flax_path.partition("/")
            if path in by_path:  # in two collections: neither may be dropped unsaid
                misplaced.append(f"{path} (in both {by_path[path][0]!r} and {collection!r})")
            by_path[path] = (collection, value)
        arrays, layouts = {}, {}
        for path, rule, _, _ in self._resolve(by_path, "canonical"):
            collection, value = by_path[path]
            if collection != rule.collection:
                misplaced.append(f"{collection}/{path} (expected in {rule.collection!r})")
            arrays[path] = np.asarray(value)
            layouts[path] = rule.layout
        if misplaced:
            raise MappingError(f"{PREFIX} {self.architecture}: variables in the wrong "
                               f"collection: {', '.join(misplaced)}")
        return arrays, layouts
