"""Which torch module is which Flax module, read from a pair's Mapping: two modules correspond
when they hold exactly the same weights.

A torch module holds the canonical tensors of the torch keys under its name; a Flax module the
canonical paths under its path. `layer1.0.conv1` <-> `layer1/block0/conv1` (one kernel),
`layer1.0` <-> `layer1/block0` (a whole block), '' <-> '' (the model). Modules without weights
(activations, pooling, dropout) correspond to nothing: they belong to their parent's own code.
Where wrappers hold the same weights as their only child, the outermost pair up first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pytest_parity.mapping import Mapping


@dataclass(frozen=True)
class ModulePair:
    """A torch module (name as in named_modules) and the Flax module (path joined by '/')
    that hold the same weights."""

    torch: str
    flax: str

    @property
    def depth(self) -> int:
        return self.torch.count(".") + 1 if self.torch else 0

    def label(self) -> str:
        return f"torch {self.torch or '(root)'} <-> flax {self.flax or '(root)'}"

    def contains(self, other: ModulePair) -> bool:
        """Whether `other` is this module or inside it (on the torch side)."""
        return not self.torch or other.torch == self.torch or \
            other.torch.startswith(f"{self.torch}.")


def _prefixes(name: str, separator: str) -> list[str]:
    parts = name.split(separator)[:-1]  # the modules holding this tensor, root first
    return [""] + [separator.join(parts[:depth]) for depth in range(1, len(parts) + 1)]


def aligned_modules(mapping: Mapping, torch_keys: Iterable[str]) -> list[ModulePair]:
    """The corresponding modules of a pair, outermost first.

    Raises:
        MappingError: a torch key that no rule accounts for.
    """
    held_by_torch: dict[str, set[str]] = {}
    held_by_flax: dict[str, set[str]] = {}
    for key, (paths, _, collection, *_) in mapping.correspondence(torch_keys).items():
        if collection is None:  # a buffer only torch keeps (num_batches_tracked)
            continue
        for module in _prefixes(key, "."):
            held_by_torch.setdefault(module, set()).update(paths)
        for path in paths:
            for module in _prefixes(path, "/"):
                held_by_flax.setdefault(module, set()).add(path)
    torch_by_weights: dict[frozenset[str], list[str]] = {}
    for module, tensors in held_by_torch.items():
        torch_by_weights.setdefault(frozenset(tensors), []).append(module)
    flax_by_weights: dict[frozenset[str], list[str]] = {}
    for module, tensors in held_by_flax.items():
        flax_by_weights.setdefault(frozenset(tensors), []).append(module)
    pairs = []
    for weights, torch_modules in torch_by_weights.items():
        flax_modules = flax_by_weights.get(weights, [])
        by_depth = sorted(torch_modules, key=lambda m: (m.count(".") if m else -1, m))
        flax_by_depth = sorted(flax_modules, key=lambda m: (m.count("/") if m else -1, m))
        pairs += [ModulePair(t, f) for t, f in zip(by_depth, flax_by_depth, strict=False)]
    return sorted(pairs, key=lambda pair: (pair.depth, pair.torch))
