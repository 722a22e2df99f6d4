"""The few layout transforms a weight mapping needs, each with its exact inverse.

A transform turns the torch-side array into the canonical one (`forward`) and back
(`inverse`). All are pure reindexing, so a round trip is bit-exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Identity:
    def forward(self, array: np.ndarray) -> np.ndarray:
        return array

    def inverse(self, array: np.ndarray) -> np.ndarray:
        return array


@dataclass(frozen=True)
class Transpose:
    """Reorder axes: canonical axis k is torch axis perm[k] (OIHW -> HWIO is (2, 3, 1, 0))."""

    perm: tuple[int, ...]

    def forward(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(array, self.perm))

    def inverse(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(array, np.argsort(self.perm)))


@dataclass(frozen=True)
class SplitAxis:
    """Split one axis into several (e.g. 768 -> 12 heads x 64); the inverse merges them."""

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
class Chain:
    """Apply transforms in order; the inverse applies their inverses in reverse order."""

    steps: tuple[Identity | Transpose | SplitAxis, ...]

    def forward(self, array: np.ndarray) -> np.ndarray:
        for step in self.steps:
            array = step.forward(array)
        return array

    def inverse(self, array: np.ndarray) -> np.ndarray:
        for step in reversed(self.steps):
            array = step.inverse(array)
        return array


Transform = Identity | Transpose | SplitAxis | Chain

OIHW_TO_HWIO = Transpose((2, 3, 1, 0))
OUT_IN_TO_IN_OUT = Transpose((1, 0))
