"""How one input reaches each framework: an image batch is channels-first in torch (NCHW) and
channels-last in Flax (NHWC); every other input is the same array on both sides.

The one place where the two layouts meet: pairs declare their input's layout, strategies draw
batches in both, and pytest_parity.run.sides runs each side with it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import numpy as np


class Layout(StrEnum):
    IMAGE = "NCHW->NHWC"  # channels move from axis 1 (torch) to the last axis (Flax)
    SAME = "same"

    def flax_shape(self, torch_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape Flax takes for an input of this torch shape."""
        if self is Layout.SAME:
            return tuple(torch_shape)
        return (torch_shape[0], *torch_shape[2:], torch_shape[1])

    def to_flax(self, torch_input: Any) -> np.ndarray:
        """A torch-layout input as Flax takes it (a C-contiguous copy where it moves)."""
        array = np.asarray(torch_input)
        if self is Layout.SAME:
            return array
        return np.ascontiguousarray(np.moveaxis(array, 1, -1))

    def output_to_torch(self, flax_output: np.ndarray, input_rank: int) -> np.ndarray:
        """A Flax output in torch's layout: one of the input's rank is channels-last like the
        input was (a conv's feature map) and moves back; others (logits) are as they are."""
        if self is Layout.SAME or np.ndim(flax_output) != input_rank:
            return flax_output
        return np.moveaxis(flax_output, -1, 1)
