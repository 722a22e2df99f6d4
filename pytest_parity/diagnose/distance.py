"""How far apart the two sides' captured arrays are, under the case's tolerance policy, with
Flax's brought to torch's layout: only the figures a verdict needs (a module's activations
are large and many, so no failure report is built)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pytest_parity.compare import case_tolerances, resolve_layers


def in_layout(array: np.ndarray, shape: tuple[int, ...], image_rank: int | None,
              to_flax: bool) -> np.ndarray | None:
    """`array` in the other side's layout, where `shape` says which (None: no way fits)."""
    if image_rank is not None and array.ndim == image_rank:
        moved = np.moveaxis(array, 1, -1) if to_flax else np.moveaxis(array, -1, 1)
        if moved.shape == tuple(shape):
            return moved
    if array.shape == tuple(shape):
        return array
    if array.ndim == len(shape) and array.ndim > 1 and array.shape[0] == 1 and \
            array.shape[1:] == tuple(shape[1:]):
        return np.broadcast_to(array, tuple(shape))  # one side's (1, S) position ids: (B, S)
    return None


@dataclass(frozen=True)
class Errors:
    max_abs: float
    margin: float  # worst |flax - torch| / (atol + rtol * |torch|): <= 1 agrees


def errors_between(flax_arrays: list[np.ndarray], torch_arrays: list[np.ndarray],
                   image_rank: int | None, tolerance: dict[str, float]) -> Errors | None:
    """How far the leaves both sides have are apart; infinitely far where both have leaves
    but none fits the other's shape; None where a side has none."""
    max_abs = margin = 0.0
    compared = False
    for flax_array, torch_array in zip(flax_arrays, torch_arrays, strict=False):
        moved = in_layout(flax_array, torch_array.shape, image_rank, to_flax=False)
        if moved is None:  # torch's the narrower: broadcast it to Flax's shape
            widened = in_layout(torch_array, flax_array.shape, image_rank, to_flax=True)
            if widened is None:
                continue
            moved, torch_array = flax_array, widened
        compared = True
        names = (str(moved.dtype), str(torch_array.dtype))
        policy, _ = resolve_layers(names, [("pair", tolerance.get("rtol"),
                                            tolerance.get("atol")), *case_tolerances.current()])
        max_abs_here, margin_here = _apart(moved, torch_array, policy.rtol, policy.atol)
        max_abs, margin = max(max_abs, max_abs_here), max(margin, margin_here)
    if not compared and flax_arrays and torch_arrays:  # both ran, but on other shapes
        return Errors(float("inf"), float("inf"))
    return Errors(max_abs, margin) if compared else None


def _apart(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float
           ) -> tuple[float, float]:
    """Max abs difference and margin (worst |a - e| / (atol + rtol * |e|)); NaN and inf must
    sit at the same places with the same signs (else an infinite margin). A few passes over
    the data: the non-finite checks run only where the difference is not finite."""
    wide = np.float64 if np.float64 in (actual.dtype, expected.dtype) else np.float32
    a: np.ndarray = actual.astype(wide, copy=False)
    e: np.ndarray = expected.astype(wide, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        difference = np.abs(a - e)
        largest = float(np.max(difference, initial=0.0))
        if not np.isfinite(largest):
            finite = np.isfinite(a) & np.isfinite(e)
            if np.any(~finite & ~((np.isnan(a) & np.isnan(e)) | (a == e))):
                return float("inf"), float("inf")
            difference = np.where(finite, difference, 0.0)
            largest = float(np.max(difference, initial=0.0))
            e = np.where(finite, e, 0.0)
        if largest == 0.0:
            return 0.0, 0.0
        allowed = np.abs(e) * wide(rtol) + wide(atol)
        if np.any((allowed == 0) & (difference > 0)):  # an exact tolerance, missed
            return largest, float("inf")
        return largest, float(np.max(np.divide(difference, allowed, out=difference,
                                               where=allowed > 0), initial=0.0))
