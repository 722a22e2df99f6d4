"""A checkpoint held against what a model expects: every missing, unexpected or misshaped tensor."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pytest_parity.checkpoint.format import Checkpoint
from pytest_parity.errors import PREFIX, CheckpointError
from pytest_parity.threads import thread_map


@dataclass(frozen=True)
class TensorSpec:
    """What a model expects under one canonical path."""

    shape: tuple[int, ...]
    dtype: str
    layout: str


class NonFiniteWarning(UserWarning):
    """A checkpoint tensor holds NaN or Inf values."""


def _has_non_finite(array: np.ndarray) -> bool:
    """Whether NaN or Inf may be present: one sum, far cheaper than a mask; a sum that
    overflows is a false alarm that the exact count then clears."""
    if array.dtype.kind != "f" and str(array.dtype) != "bfloat16":
        return False
    accumulator = np.float32 if array.dtype.itemsize < 4 else array.dtype
    return not np.isfinite(np.sum(array, dtype=accumulator))


def verify(checkpoint: Checkpoint, expected: Mapping[str, TensorSpec],
           path: str | Path = "<memory>") -> None:
    """Check a checkpoint against a model's expected tensors; list every problem at once.

    Non-finite values are a warning (NonFiniteWarning), not an error.

    Raises:
        CheckpointError: missing or unexpected keys, or a shape, layout or dtype mismatch.
    """
    problems = [f"{name}: missing (expected {spec.shape} {spec.dtype}, layout {spec.layout})"
                for name, spec in sorted(expected.items()) if name not in checkpoint.arrays]
    problems += [f"{name}: unexpected key (shape {checkpoint.arrays[name].shape})"
                 for name in sorted(checkpoint.arrays) if name not in expected]
    present = sorted(name for name in expected if name in checkpoint.arrays)
    suspicious = dict(zip(present, thread_map(lambda name: _has_non_finite(
        checkpoint.arrays[name]), present), strict=True))
    for name, spec in sorted(expected.items()):
        if name not in checkpoint.arrays:
            continue
        array, layout = checkpoint.arrays[name], checkpoint.layouts.get(name, "")
        if tuple(array.shape) != tuple(spec.shape) or layout != spec.layout:
            problems.append(f"{name}: shape {tuple(array.shape)} layout {layout or '?'} where "
                            f"{tuple(spec.shape)} layout {spec.layout} was expected")
        if str(array.dtype) != spec.dtype:
            problems.append(f"{name}: dtype {array.dtype} where {spec.dtype} was expected")
        if suspicious[name]:
            bad = int(np.count_nonzero(~np.isfinite(array.astype(np.float32))))
            if bad:
                warnings.warn(f"{PREFIX} {path}: {name}: {bad} of {array.size} values are "
                              "NaN or Inf", NonFiniteWarning, stacklevel=2)
    if problems:
        raise CheckpointError(path, problems)
