"""A pair's weight correspondence as data: rules of (canonical path, torch key, Flax path).

A rule's Flax path is its collection (`params`, `batch_stats`) followed by the canonical path;
a rule without a collection is a tensor only torch keeps, absent from Flax variables (the
rules themselves, with their `{name}` patterns: pytest_parity.mapping.rule). Besides its rules,
a Mapping names the torch keys it ignores (stale tensors a checkpoint file still holds) and
the Flax variables no torch tensor gives (`flax_only`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Mapping as MappingType
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from pytest_parity.mapping.rule import MappingError, Rule, key_pattern
from pytest_parity.threads import thread_map


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


def _names_problem(values: Any, flax: bool) -> str:
    """What makes `ignored` or `flax_only` unusable ('' when nothing does)."""
    if not isinstance(values, tuple) or not all(isinstance(v, str) and v for v in values):
        return f"must be a tuple of non-empty strings, got {type(values).__name__}"
    twice = sorted({value for value in values if values.count(value) > 1})
    if twice:
        return f"lists {twice[0]!r} twice"
    if flax:
        bare = [value for value in values if not all(value.partition("/"))]
        if bare:
            return f"names Flax variables as 'collection/path', got {bare[0]!r}"
    return ""


@dataclass(frozen=True)
class Mapping:
    """The rules of one architecture: torch state dict <-> canonical arrays <-> Flax variables.

    Arrays are numpy arrays on every side; the frameworks' own types are made elsewhere.
    `ignored`: torch keys (patterns, as in rules) dropped on the way in, e.g. a buffer a
    checkpoint file still holds but the model no longer saves. `flax_only`: Flax variables
    ('collection/path', patterns) that no torch tensor gives, so no canonical checkpoint holds.
    """

    architecture: str
    rules: tuple[Rule, ...]
    ignored: tuple[str, ...] = ()
    flax_only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A second rule for the same key would never be used one way and collide the other.
        first: dict[tuple[str, str], int] = {}
        for index, rule in enumerate(self.rules):
            for side, key in (("torch key", rule.torch),
                              *(("canonical path", path) for path in rule.canonical_paths)):
                earlier = first.setdefault((side, key), index)
                if earlier != index:
                    raise MappingError(f"{self.architecture}: rules {earlier} and "
                                       f"{index} both name the {side} {key!r}")
        for name, flax in (("ignored", False), ("flax_only", True)):
            problem = _names_problem(getattr(self, name), flax)
            if problem:
                raise MappingError(f"{self.architecture}: {name} {problem}")
        kept = sorted({rule.torch for rule in self.rules} & set(self.ignored))
        given = [path for path in self.flax_only
                 if (found := self._match(path.partition("/")[2], "canonical"))
                 and found[0].collection == path.partition("/")[0]]
        if kept or given:
            what = (f"torch key {kept[0]!r} has a rule and is ignored" if kept
                    else f"Flax variable {given[0]!r} has a rule and is listed as flax_only")
            raise MappingError(f"{self.architecture}: {what}")

    @cached_property
    def _ignored_patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(key_pattern(pattern) for pattern in self.ignored)

    @cached_property
    def _flax_only_patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(key_pattern(pattern) for pattern in self.flax_only)

    def ignored_keys(self, keys: Iterable[str]) -> list[str]:
        """The torch keys among `keys` that this mapping ignores (and torch_to_canonical
        drops), in their order."""
        return [key for key in keys if any(p.match(key) for p in self._ignored_patterns)]

    def is_flax_only(self, flax_path: str) -> bool:
        """Whether a Flax variable ('collection/path') is one no torch tensor gives."""
        return any(pattern.match(flax_path) for pattern in self._flax_only_patterns)

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
        """Each key with its rule, piece and placeholder values; keys without a rule are listed.
        Ignored torch keys are left out."""
        resolved, unmatched = [], []
        keys = list(keys)
        dropped = set(self.ignored_keys(keys)) if side == "torch" else set()
        for key in keys:
            if key in dropped:
                continue
            found = self._match(key, side)
            if found is None:
                unmatched.append(key)
            else:
                resolved.append((key, *found))
        if unmatched:
            what = "torch keys" if side == "torch" else "canonical paths"
            raise MappingError(f"{self.architecture}: {len(unmatched)} {what} have "
                               f"no rule: {', '.join(unmatched)}")
        return resolved

    def correspondence(self, torch_keys: Iterable[str]) -> dict[str, tuple[Any, ...]]:
        """What each torch key becomes: its canonical paths, layout, collection, transform and
        split. Two mappings that agree here convert the same state dicts the same way, however
        their rules are written (patterns or concrete keys). Ignored keys are left out."""
        return {key: (tuple(path.format(**groups) for path in rule.canonical_paths),
                      rule.layout, rule.collection, rule.transform, rule.split)
                for key, rule, _, groups in self._resolve(torch_keys, "torch")}

    def describe(self) -> list[str]:
        """One line per rule: torch key -> canonical path(s) [layout, collection] transform,
        '(inferred)' after a rule made from names and shapes alone; then the ignored torch keys
        and the Flax-only variables."""
        lines = [f"mapping {self.architecture}: {len(self.rules)} rules"]
        for rule in self.rules:
            where = rule.collection or "torch only"
            pieces = f" split {rule.split}" if rule.split else ""
            inferred = " (inferred)" if rule.inferred else ""
            lines.append(f"  {rule.torch} -> {', '.join(rule.canonical_paths)} "
                         f"[{rule.layout}, {where}] {rule.transform}{pieces}{inferred}")
        lines += [f"  {pattern} -> (ignored)" for pattern in self.ignored]
        lines += [f"  (no torch tensor) -> {path} [Flax only]" for path in self.flax_only]
        return lines

    def torch_to_canonical(self, state: MappingType[str, np.ndarray]
                           ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Canonical arrays and their layouts from a torch state dict (as numpy arrays).

        Ignored keys are dropped (`ignored_keys` names them).

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
            raise MappingError(f"{self.architecture}: fused tensors lack pieces: "
                               + "; ".join(missing))

        def to_torch(item: tuple[str, tuple[Rule, dict[str, str]]]) -> np.ndarray:
            rule, groups = item[1]
            return rule.to_torch([arrays[path.format(**groups)] for path in rule.canonical_paths])

        return dict(zip(fused, thread_map(to_torch, fused.items()), strict=True))

    def canonical_to_flax(self, arrays: MappingType[str, np.ndarray],
                          flax_only: MappingType[str, Any] | None = None) -> dict[str, Any]:
        """Nested Flax variables ({'params': ..., 'batch_stats': ...}) from canonical arrays.

        Buffers only torch keeps (rules without a collection) are left out. The Flax-only
        variables, which no canonical checkpoint holds, are taken from `flax_only` (nested
        Flax variables, e.g. from the Flax model's own init).

        Raises:
            MappingError: a canonical path no rule accounts for; Flax-only variables not given,
                or variables given there that are not Flax-only.
        """
        flat = {}
        for path, rule, _, _ in self._resolve(arrays, "canonical"):
            if rule.collection is not None:
                flat[f"{rule.collection}/{path}"] = arrays[path]
        given = flatten(flax_only or {})
        missing = [pattern for pattern, regex in zip(self.flax_only, self._flax_only_patterns,
                                                     strict=True)
                   if not any(regex.match(path) for path in given)]
        if missing:
            raise MappingError(f"{self.architecture}: Flax-only variables (no torch "
                               f"tensor gives them) lack values: {', '.join(missing)}; pass "
                               "them as flax_only= (e.g. from the Flax model's init)")
        strays = [path for path in given if not self.is_flax_only(path)]
        if strays:
            raise MappingError(f"{self.architecture}: flax_only= gives variables the "
                               f"mapping does not list as Flax-only: {', '.join(strays)}")
        return unflatten({**flat, **given})

    def flax_to_canonical(self, variables: MappingType[str, Any]
                          ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Canonical arrays and layouts from Flax variables (nested dicts of arrays).

        Flax-only variables are left out: no canonical path holds them.

        Raises:
            MappingError: a variable that no rule accounts for, or one in the wrong collection.
        """
        by_path: dict[str, tuple[str, Any]] = {}
        misplaced = []
        for flax_path, value in flatten(variables).items():
            if self.is_flax_only(flax_path):
                continue
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
            raise MappingError(f"{self.architecture}: variables in the wrong "
                               f"collection: {', '.join(misplaced)}")
        return arrays, layouts
