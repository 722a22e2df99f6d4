"""One rule of a mapping: a torch key (or pattern) <-> one or several canonical paths.

Rules take patterns: `layer{i}.{j}.conv1.weight` <-> `layer{i}/block{j}/conv1/kernel`, where each
`{name}` stands for a whole number and must appear on both sides. A rule without a collection
is a tensor only torch keeps (e.g. BatchNorm's `num_batches_tracked`, or the second key of
a tied weight, whose layout reads `tied:<first key>`), absent from Flax variables. A fused
rule maps one torch tensor to several canonical paths through a `Split`. An `inferred` rule
was made by the automatic mapping from names and shapes alone, for a tensor of no known layer
kind (pytest_parity.mapping.inferred): worth a look before it is trusted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from pytest_parity.errors import ParityError
from pytest_parity.mapping.transforms import Identity, Split, Transform

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class MappingError(ParityError):
    """Keys that no rule of a mapping accounts for, or a rule that is not well formed."""


class ParityMappingWarning(UserWarning):
    """A mapping that was made, but not the obvious way (layers paired by name, not order)."""


def key_pattern(template: str) -> re.Pattern[str]:
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
    inferred: bool = False

    def __post_init__(self) -> None:
        where = f"rule {self.torch!r} <-> {self.canonical!r}"
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
        return key_pattern(self.torch)

    @cached_property
    def canonical_patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(key_pattern(path) for path in self.canonical_paths)

    def to_canonical(self, array: np.ndarray) -> list[np.ndarray]:
        pieces = self.split.forward(array) if self.split else [array]
        return [self.transform.forward(piece) for piece in pieces]

    def to_torch(self, pieces: list[np.ndarray]) -> np.ndarray:
        restored = [self.transform.inverse(np.asarray(piece)) for piece in pieces]
        return self.split.inverse(restored) if self.split else restored[0]
