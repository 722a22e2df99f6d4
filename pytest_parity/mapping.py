"""A pair's weight correspondence as data: rules of (canonical path, torch key, Flax path).

Rules take patterns: `layer{i}.{j}.conv1.weight` <-> `layer{i}/block{j}/conv1/kernel`, where each
`{name}` stands for a whole number and must appear on both sides. A rule's Flax path is its
collection (`params`, `batch_stats`) followed by the canonical path; a rule without a
collection is a buffer that only torch keeps (e.g. BatchNorm's `num_batches_tracked`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Mapping as MappingType
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from pytest_parity.errors import ParityError
from pytest_parity.transforms import Identity, Transform

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class MappingError(ParityError):
    """Keys that no rule of a mapping accounts for, or a rule that is not well formed."""


def _pattern(template: str) -> re.Pattern[str]:
    """A template's regex: literal text, and each `{name}` a whole number."""
    parts = _PLACEHOLDER.split(template)
    regex = "".join(re.escape(part) if index % 2 == 0 else f"(?P<{part}>\\d+)"
                     for index, part in enumerate(parts))
    return re.compile(regex + r"\Z")


@dataclass(frozen=True)
class Rule:
    """One correspondence; `layout` is the canonical tensor's declared layout."""

    canonical: str
    torch: str
    layout: str
    collection: str | None = "params"
    transform: Transform = field(default_factory=Identity)

    def __post_init__(self) -> None:
        names = set(_PLACEHOLDER.findall(self.canonical))
        if names != set(_PLACEHOLDER.findall(self.torch)):
            raise MappingError(f"rule {self.torch!r} <-> {self.canonical!r}: the placeholders "
                               "must be the same on both sides")

    @cached_property
    def torch_pattern(self) -> re.Pattern[str]:
        return _pattern(self.torch)

    @cached_property
    def canonical_pattern(self) -> re.Pattern[str]:
        return _pattern(self.canonical)

    @property
    def flax(self) -> str | None:
        return f"{self.collection}/{self.canonical}" if self.collection else None


def batch_norm_rules(torch_prefix: str, canonical_prefix: str) -> list[Rule]:
    """torch BatchNorm2d's five tensors; the running statistics are Flax `batch_stats`."""
    return [
        Rule(f"{canonical_prefix}/scale", f"{torch_prefix}.weight", "C"),
        Rule(f"{canonical_prefix}/bias", f"{torch_prefix}.bias", "C"),
        Rule(f"{canonical_prefix}/mean", f"{torch_prefix}.running_mean", "C", "batch_stats"),
        Rule(f"{canonical_prefix}/var", f"{torch_prefix}.running_var", "C", "batch_stats"),
        Rule(f"{canonical_prefix}/num_batches_tracked", f"{torch_prefix}.num_batches_tracked",
             "scalar", collection=None),
    ]


@dataclass(frozen=True)
class Mapping:
    """The rules of one architecture; converts torch state dicts to canonical arrays and back."""

    architecture: str
    rules: tuple[Rule, ...]

    def _match(self, key: str, side: str) -> tuple[Rule, dict[str, str]] | None:
        for rule in self.rules:
            pattern = rule.torch_pattern if side == "torch" else rule.canonical_pattern
            found = pattern.match(key)
            if found:
                return rule, found.groupdict()
        return None

    def _resolve(self, keys: Iterable[str], side: str
                 ) -> list[tuple[str, Rule, dict[str, str]]]:
        """Each key with its rule and placeholder values; every key without a rule is listed."""
        resolved, unmatched = [], []
        for key in keys:
            found = self._match(key, side)
            if found is None:
                unmatched.append(key)
            else:
                resolved.append((key, *found))
        if unmatched:
            what = "torch keys" if side == "torch" else "canonical paths"
            raise MappingError(f"[parity] {self.architecture}: {len(unmatched)} {what} have "
                               f"no rule: {', '.join(unmatched)}")
        return resolved

    def torch_to_canonical(self, state: MappingType[str, np.ndarray]
                           ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Canonical arrays and their layouts from a torch state dict (as numpy arrays).

        Raises:
            MappingError: listing every torch key no rule accounts for.
        """
        arrays, layouts = {}, {}
        for key, rule, groups in self._resolve(state, "torch"):
            canonical = rule.canonical.format(**groups)
            arrays[canonical] = rule.transform.forward(np.asarray(state[key]))
            layouts[canonical] = rule.layout
        return arrays, layouts

    def canonical_to_torch(self, arrays: MappingType[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A torch state dict (as numpy arrays) from canonical arrays.

        Raises:
            MappingError: listing every canonical path no rule accounts for.
        """
        return {rule.torch.format(**groups): rule.transform.inverse(np.asarray(arrays[path]))
                for path, rule, groups in self._resolve(arrays, "canonical")}
