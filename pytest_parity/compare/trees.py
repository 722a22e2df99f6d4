"""Pytrees as the comparisons see them: leaves by path, structure checked before any value.

A tree is nested mappings (dict, Flax FrozenDict), lists and tuples (namedtuples too) whose
leaves are arrays: torch tensors, jax or numpy arrays, Python numbers. A leaf's path joins
mapping keys and sequence indices with '/', e.g. `params/conv1/kernel` or `1/logits`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pytest_parity.arrays import dtype_name, to_numpy
from pytest_parity.errors import Prefixed


class StructureMismatch(Prefixed, AssertionError):
    """The trees cannot be compared value by value: leaves missing, shapes or masks differ."""

    def summary(self) -> str:
        """The message on one line, without the prefix (for the report's record)."""
        return "; ".join(line.strip() for line in self.message.splitlines())


def leaves(tree: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of `tree` by its path ('' for a tree that is one leaf)."""
    if isinstance(tree, Mapping):
        children = [(str(key), value) for key, value in tree.items()]
    elif isinstance(tree, (list, tuple)):
        children = [(str(index), value) for index, value in enumerate(tree)]
    else:
        return {path: tree}
    found: dict[str, Any] = {}
    for key, child in children:
        found.update(leaves(child, f"{path}/{key}" if path else key))
    return found


def _where(name: str, path: str) -> str:
    return f"{name}/{path}" if path else name


def arrays_by_path(actual: Any, expected: Any, name: str) -> dict[str, tuple[np.ndarray,
                                                                            np.ndarray]]:
    """Both trees' leaves as numpy arrays, paired by path.

    Raises:
        StructureMismatch: listing every leaf missing on either side and every shape mismatch,
            before any value is compared.
    """
    actual_leaves, expected_leaves = leaves(actual), leaves(expected)
    problems = [f"  {_where(name, path)}: missing in actual (expected has it)"
                for path in expected_leaves if path not in actual_leaves]
    problems += [f"  {_where(name, path)}: unexpected in actual (expected has no such leaf)"
                 for path in actual_leaves if path not in expected_leaves]
    pairs = {}
    for path in (path for path in expected_leaves if path in actual_leaves):
        a, e = to_numpy(actual_leaves[path]), to_numpy(expected_leaves[path])
        if a.shape != e.shape:
            problems.append(f"  {_where(name, path)}: shape {a.shape} ({dtype_name(a)}) does not "
                            f"match expected shape {e.shape} ({dtype_name(e)})")
        pairs[path] = (a, e)
    if problems:
        raise StructureMismatch("\n".join([f"{name}: structures differ "
                                        f"({len(problems)} problems)", *problems]))
    return pairs

