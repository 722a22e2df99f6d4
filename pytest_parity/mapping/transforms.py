"""The few layout transforms a weight mapping needs, each with its exact inverse.

A transform turns the torch-side array into the canonical one (`forward`) and back
(`inverse`). All are pure reindexing, so a round trip is bit-exact. `Split` is the one
transform between one torch tensor and several canonical ones (a fused `in_proj_weight`
and the separate query/key/value of a Flax attention); it is applied before the others.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Identity:
    def forward(self, array: np.ndarray) -> np.ndarray:
        return array

    def inverse(self, array: np.ndarray) -> np.ndarray:
        return array


# Measured on this CPU: copying a transpose in slabs of 32 along the output's last axis is
# 1.6-2x faster than one strided copy (3072x768 float32: 2.5 ms vs 5.2 ms; a 512x512x3x3
# kernel OIHW -> HWIO: 2.8 ms vs 4.6 ms), because each slab's reads stay in cache.
_SLAB = 32


# torch's permuted copy is 1.5-1.7x faster still (512x512x3x3 HWIO -> OIHW: 6.3 ms vs 10.3 ms
# in slabs, whose slabs cannot help when the output's last axis is a 3-wide kernel axis;
# 2048x1000: 1.5 ms vs 2.9 ms). It is used when torch is already imported (a conversion to or
# from torch has loaded it) for the dtypes it shares with numpy, on arrays worth a thread.
_TORCH_MIN_SIZE = 1 << 16
_TORCH_DTYPES = ("float16", "float32", "float64", "int32", "int64", "uint8", "bool")


def _torch_transposed_copy(array: np.ndarray, perm: tuple[int, ...]) -> np.ndarray | None:
    torch = sys.modules.get("torch")
    if torch is None or array.size < _TORCH_MIN_SIZE or array.dtype.name not in _TORCH_DTYPES \
            or not np.asarray(array).flags.writeable:  # a jax array's view: torch would warn
        return None
    copied: np.ndarray = torch.from_numpy(np.asarray(array)).permute(*perm).contiguous().numpy()
    return copied


def transposed_copy(array: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
    """`np.transpose(array, perm)` as a new C-contiguous array: by torch where it is loaded,
    else by numpy, slab by slab."""
    copied = _torch_transposed_copy(array, perm)
    if copied is not None:
        return copied
    axis = perm[-1] if perm else 0
    if array.ndim < 2 or array.shape[axis] <= _SLAB:
        return np.asarray(np.transpose(array, perm), order="C")
    out = np.empty([array.shape[p] for p in perm], array.dtype)
    index: list[slice] = [slice(None)] * array.ndim
    for start in range(0, array.shape[axis], _SLAB):
        index[axis] = slice(start, start + _SLAB)
        out[..., start:start + _SLAB] = np.transpose(array[tuple(index)], perm)
    return out


@dataclass(frozen=True)
class Transpose:
    """Reorder axes: canonical axis k is torch axis perm[k] (OIHW -> HWIO is (2, 3, 1, 0))."""

    perm: tuple[int, ...]

    def forward(self, array: np.ndarray) -> np.ndarray:
        return transposed_copy(array, self.perm)

    def inverse(self, array: np.ndarray) -> np.ndarray:
        return transposed_copy(array, tuple(int(axis) for axis in np.argsort(self.perm)))


@dataclass(frozen=True)
class Reshape:
    """Reshape one axis into several (768 -> 12 heads x 64); the inverse merges them back."""

    axis: int
    sizes: tuple[int, ...]

    def forward(self, array: np.ndarray) -> np.ndarray:
        axis = self.axis % array.ndim
        return array.reshape(array.shape[:axis] + self.sizes + array.shape[axis + 1:])

    def inverse(self, array: np.ndarray) -> np.ndarray:
        axis = self.axis % (array.ndim - len(self.sizes) + 1)
        merged = int(np.prod(self.sizes))
        return array.reshape((*array.shape[:axis], merged, *array.shape[axis + len(self.sizes):]))


@dataclass(frozen=True)
class Flip:
    """Reverse the given axes (a transposed convolution's kernel, where Flax does not flip
    it itself); its own inverse."""

    axes: tuple[int, ...]

    def forward(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.flip(array, self.axes))

    def inverse(self, array: np.ndarray) -> np.ndarray:
        return self.forward(array)


@dataclass(frozen=True)
class Chain:
    """Apply transforms in order; the inverse applies their inverses in reverse order."""

    steps: tuple[Identity | Transpose | Reshape | Flip, ...]

    def forward(self, array: np.ndarray) -> np.ndarray:
        for step in self.steps:
            array = step.forward(array)
        return array

    def inverse(self, array: np.ndarray) -> np.ndarray:
        for step in reversed(self.steps):
            array = step.inverse(array)
        return array


@dataclass(frozen=True)
class Split:
    """Split one tensor into `parts` equal pieces along `axis`; the inverse concatenates."""

    axis: int
    parts: int

    def forward(self, array: np.ndarray) -> list[np.ndarray]:
        if array.shape[self.axis] % self.parts:
            raise ValueError(f"cannot split shape {array.shape} into {self.parts} equal parts "
                             f"along axis {self.axis}")
        return [np.asarray(piece, order="C")
                for piece in np.split(array, self.parts, axis=self.axis)]

    def inverse(self, pieces: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(pieces, axis=self.axis)


Transform = Identity | Transpose | Reshape | Flip | Chain

_KINDS: dict[str, type] = {"identity": Identity, "transpose": Transpose, "reshape": Reshape,
                           "flip": Flip, "chain": Chain, "split": Split}


def to_data(transform: Transform | Split) -> dict[str, Any]:
    """A transform as JSON-able data (a mapping's cache file)."""
    kind = next(name for name, cls in _KINDS.items() if type(transform) is cls)
    if isinstance(transform, Chain):
        return {"kind": kind, "steps": [to_data(step) for step in transform.steps]}
    return {"kind": kind, **{name: list(value) if isinstance(value, tuple) else value
                             for name, value in vars(transform).items()}}


STEP_KINDS = ("identity", "transpose", "reshape", "flip")  # what a chain's steps may be
TRANSFORM_KINDS = (*STEP_KINDS, "chain")  # what a rule's transform may be


def _shown(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:  # data of a damaged file may nest deep
        text = f"a deeply nested {type(value).__name__}"
    return text if len(text) <= 60 else f"{text[:57]}..."


def _integers(value: Any, name: str, *, minimum: int | None = None) -> tuple[int, ...]:
    """A non-empty list of whole numbers (not booleans), each at least `minimum`."""
    if not (isinstance(value, list) and value and all(
            type(item) is int and (minimum is None or item >= minimum) for item in value)):
        at_least = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name!r} must be a non-empty list of integers{at_least}, "
                         f"got {_shown(value)}")
    return tuple(value)


def _checked(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a transform of this kind, each of the type and range it must have."""
    expected = {"identity": (), "transpose": ("perm",), "reshape": ("axis", "sizes"),
                "flip": ("axes",), "chain": ("steps",), "split": ("axis", "parts")}[kind]
    if sorted(fields) != sorted(expected):
        raise ValueError(f"a {kind} has the fields {list(expected)}, got {sorted(fields)}")
    checked: dict[str, Any] = {}
    for name, value in fields.items():
        if name in ("axis", "parts"):
            least = 2 if name == "parts" else -(2**31)
            if type(value) is not int or not least <= value < 2**31:
                raise ValueError(f"{name!r} must be an integer{' >= 2' if least == 2 else ''}, "
                                 f"got {_shown(value)}")
            checked[name] = value
        elif name == "perm":
            checked[name] = _integers(value, name, minimum=0)
            if sorted(checked[name]) != list(range(len(value))):
                raise ValueError(f"'perm' must order the axes 0..{len(value) - 1}, each once, "
                                 f"got {_shown(value)}")
        elif name == "sizes":
            checked[name] = _integers(value, name, minimum=1)
        elif name == "axes":
            checked[name] = _integers(value, name)
            if len(set(checked[name])) != len(value):
                raise ValueError(f"'axes' must name each axis once, got {_shown(value)}")
        else:  # a chain's steps
            if not (isinstance(value, list) and value):
                raise ValueError(f"'steps' must be a non-empty list of transforms, "
                                 f"got {_shown(value)}")
            checked[name] = tuple(from_data(step, STEP_KINDS) for step in value)
    return checked


def from_data(data: Any, kinds: tuple[str, ...] = TRANSFORM_KINDS) -> Any:
    """The inverse of `to_data`: a transform of one of `kinds`, every field checked.

    Raises:
        ValueError: not a transform of those kinds, or a field missing, unknown or invalid.
    """
    kind = data.get("kind") if isinstance(data, dict) else None
    if not isinstance(kind, str) or kind not in kinds:
        raise ValueError(f"expected a transform {{'kind': one of {', '.join(kinds)}, ...}}, "
                         f"got {_shown(data)}")
    fields = _checked(kind, {name: value for name, value in data.items() if name != "kind"})
    return _KINDS[kind](**fields)


OIHW_TO_HWIO = Transpose((2, 3, 1, 0))
OUT_IN_TO_IN_OUT = Transpose((1, 0))
