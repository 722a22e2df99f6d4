"""Masks per leaf: which elements of each output leaf a comparison counts.

`mask=` (and `padding=`, which only informs the failure report) takes one of three forms:

    an array     one mask for the whole output: it applies to every leaf it fits and leaves
                 the others compared in full; an array that fits no leaf is refused
    a tree       masks shaped like the output: the same mapping keys and sequence positions,
                 each an array or None (that leaf compared in full). A key left out is
                 compared in full, as None is; a key or position that names no part of the
                 output is refused, naming it. An array above several leaves covers those
                 under it that it fits, as a single array does for the whole output.
    a function   called with each leaf's path, as the comparison names leaves ('' for a
                 single array, 'last_hidden_state', '1/logits'); returns its mask or None

A Python list or tuple is a tree where the output has a list or tuple at that place, an
array-like elsewhere. A mask fits a leaf when its shape is a prefix of the leaf's (an attention
mask (batch, tokens) over hidden states (batch, tokens, hidden)) or broadcasts to it.

A *position* is an index over the leading axes the mask spans (up to its last axis longer
than 1): the mask (8, 56) over hidden states (8, 56, 384) has 448 positions of 384 elements.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_parity.arrays import to_numpy
from pytest_parity.compare.trees import StructureMismatch, leaves

NAMES_SHOWN = 10


@dataclass(frozen=True)
class LeafMask:
    """One leaf's mask: True where an element (and a position) counts."""

    keep: np.ndarray  # booleans of the leaf's shape
    positions: np.ndarray  # booleans over the leading axes the mask spans

    @property
    def n_masked(self) -> int:
        return int(self.keep.size - np.count_nonzero(self.keep))

    @property
    def n_masked_positions(self) -> int:
        return int(self.positions.size - np.count_nonzero(self.positions))

    def position_of(self, index: tuple[int, ...]) -> tuple[int, ...]:
        """The position an element's index lies in."""
        return index[:self.positions.ndim]


def fit(mask: Any, shape: tuple[int, ...]) -> LeafMask | None:
    """The mask over a leaf of `shape`, or None where it fits neither as a prefix of the
    leaf's shape nor by numpy broadcasting."""
    array = to_numpy(mask).astype(bool)
    if array.ndim < len(shape) and array.shape == shape[:array.ndim]:
        array = array.reshape(array.shape + (1,) * (len(shape) - array.ndim))
    if array.ndim > len(shape):
        return None
    array = array.reshape((1,) * (len(shape) - array.ndim) + array.shape)
    try:
        keep = np.broadcast_to(array, shape)
    except ValueError:
        return None
    spanned = max((axis + 1 for axis, size in enumerate(array.shape) if size != 1), default=0)
    positions = np.broadcast_to(array.reshape(array.shape[:spanned]), shape[:spanned])
    return LeafMask(keep, positions)


def _where(name: str, path: str) -> str:
    return f"{name}/{path}" if path else name


def _join(path: str, key: str) -> str:
    return f"{path}/{key}" if path else key


def _children(tree: Any) -> dict[str, Any] | None:
    """A node's children by key, as trees.leaves walks them; None for a leaf."""
    if isinstance(tree, Mapping):
        return {str(key): value for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return {str(index): value for index, value in enumerate(tree)}
    return None


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:NAMES_SHOWN])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > NAMES_SHOWN else "")


# One mask given for a part of the output: where, the mask, the leaves it covers.
Given = tuple[str, Any, list[str]]


def _walk(mask: Any, node: Any, path: str, name: str, what: str, problems: list[str]
          ) -> Iterator[Given]:
    """The masks a tree of masks gives, walked beside the output tree."""
    if mask is None:
        return
    children = _children(node)
    if not isinstance(mask, Mapping) and (children is None or not isinstance(mask, (list, tuple))):
        yield path, mask, list(leaves(node, path))
        return
    for key, part in (_children(mask) or {}).items():
        if children is not None and key in children:
            yield from _walk(part, children[key], _join(path, key), name, what, problems)
            continue
        there = (f"{_where(name, path)} is an array" if children is None
                 else f"{_where(name, path)} has {_names(list(children)) or 'no leaves'}")
        problems.append(f"  {_where(name, _join(path, key))}: the {what} names no leaf of the "
                        f"output ({there})")


def _is_function(mask: Any) -> bool:
    return callable(mask) and not hasattr(mask, "shape")


def _given(mask: Any, expected: Any, name: str, what: str, problems: list[str]
           ) -> list[Given]:
    if _is_function(mask):
        by_path = ((path, mask(path)) for path in leaves(expected))
        return [(path, leaf_mask, [path]) for path, leaf_mask in by_path if leaf_mask is not None]
    return list(_walk(mask, expected, "", name, what, problems))


def _array(mask: Any, where: str, what: str, problems: list[str]) -> np.ndarray | None:
    if isinstance(mask, Mapping) or _is_function(mask):
        problems.append(f"  {where}: the {what} must be an array of booleans or numbers, got "
                        f"{type(mask).__name__}")
        return None
    array = to_numpy(mask)
    if array.dtype.kind not in "biuf":
        problems.append(f"  {where}: the {what} must be an array of booleans or numbers, got "
                        f"dtype {array.dtype}")
        return None
    return array


def masks_by_path(mask: Any, expected: Any, shapes: Mapping[str, tuple[int, ...]], name: str,
                  *, strict: bool = True, what: str = "mask") -> dict[str, LeafMask]:
    """Each leaf's mask, by path; a leaf left out is compared in full.

    Args:
        mask: an array, a tree of masks, or a function of the leaf's path (the module says how).
        expected: the output tree whose structure a tree of masks follows.
        shapes: each leaf's shape, by path.
        strict: refuse a mask that fits no leaf it is given for (False for `padding`, which
            only informs the report: a leaf it does not fit has no padding).
        what: how messages name the argument.
    Raises:
        StructureMismatch: naming every key that names no part of the output, every mask
            that is not an array and (strict) every mask that fits none of its leaves.
    """
    problems: list[str] = []
    fitted: dict[str, LeafMask] = {}
    for path, given, covered in _given(mask, expected, name, what, problems):
        array = _array(given, _where(name, path), what, problems)
        if array is None:
            continue
        fits = {leaf: fit(array, shapes[leaf]) for leaf in covered}
        fitted.update({leaf: leaf_mask for leaf, leaf_mask in fits.items() if leaf_mask})
        if strict and covered and not any(fits.values()):
            problems += [f"  {_where(name, leaf)}: {what} of shape {array.shape} fits neither "
                         f"a prefix of nor broadcasts to the leaf's shape {shapes[leaf]}"
                         for leaf in covered]
    if len(problems) == 1:
        raise StructureMismatch(problems[0].strip())
    if problems:
        raise StructureMismatch("\n".join([f"{name}: the {what} does not fit the "
                                           f"output ({len(problems)} problems)", *problems]))
    return fitted

