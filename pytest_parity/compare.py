"""Compare two arrays under one tolerance policy and say where and by how much they differ."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pytest_parity import records
from pytest_parity.arrays import dtype_name, to_numpy
from pytest_parity.tolerance import resolve

PREFIX = "[parity]"


@dataclass(frozen=True)
class ParityResult:
    """The verdict of one comparison: the errors, the tolerance, and the margin between them."""

    name: str
    shape: tuple[int, ...]
    actual_dtype: str
    expected_dtype: str
    max_abs: float
    max_rel: float
    worst_index: tuple[int, ...]
    rtol: float
    atol: float
    n_failing: int
    size: int
    # Worst |actual - expected| / (atol + rtol * |expected|): <= 1 passes.
    margin: float

    @property
    def passed(self) -> bool:
        return self.n_failing == 0

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["passed"] = self.passed
        return record


def _nonfinite_mismatch(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Positions where NaN or +/-Inf appear in one array but not at the same place in the other."""
    nan_mismatch = np.isnan(actual) != np.isnan(expected)
    inf_mismatch = np.isinf(actual) != np.isinf(expected)
    sign_mismatch = np.isinf(actual) & np.isinf(expected) & (np.sign(actual) != np.sign(expected))
    return nan_mismatch | inf_mismatch | sign_mismatch


def compare(actual: Any, expected: Any, *, rtol: float | None = None,
            atol: float | None = None, name: str = "output") -> ParityResult:
    """Compare without raising; the shapes must agree (a mismatch raises AssertionError)."""
    actual_np, expected_np = to_numpy(actual), to_numpy(expected)
    if actual_np.shape != expected_np.shape:
        raise AssertionError(
            f"{PREFIX} {name}: shape {actual_np.shape} ({dtype_name(actual_np)}) does not match "
            f"expected shape {expected_np.shape} ({dtype_name(expected_np)})"
        )
    tolerance = resolve(rtol, atol, dtype_name(actual_np), dtype_name(expected_np))
    a, e = actual_np.astype(np.float64), expected_np.astype(np.float64)
    both_finite = np.isfinite(a) & np.isfinite(e)
    abs_err = np.abs(np.subtract(a, e, out=np.zeros_like(a), where=both_finite))
    allowed = tolerance.atol + tolerance.rtol * np.abs(np.where(both_finite, e, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_err = np.where(abs_err > 0, abs_err / np.abs(e), 0.0)  # inf where expected is 0
        ratio = np.where(abs_err > 0, abs_err / allowed, 0.0)
    ratio = np.where(_nonfinite_mismatch(a, e), np.inf, ratio)
    failing = ratio > 1.0
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape) if ratio.size else ()
    return ParityResult(
        name=name,
        shape=tuple(actual_np.shape),
        actual_dtype=dtype_name(actual_np),
        expected_dtype=dtype_name(expected_np),
        max_abs=float(abs_err.max()) if abs_err.size else 0.0,
        max_rel=float(rel_err.max()) if rel_err.size else 0.0,
        worst_index=tuple(int(i) for i in worst),
        rtol=tolerance.rtol,
        atol=tolerance.atol,
        n_failing=int(failing.sum()),
        size=int(ratio.size),
        margin=float(ratio.max()) if ratio.size else 0.0,
    )


def format_failure(result: ParityResult) -> str:
    """The message of a failed comparison."""
    fraction = result.n_failing / result.size if result.size else 0.0
    return "\n".join([
        f"{PREFIX} {result.name}: values are not sufficiently close",
        f"  shape {result.shape}, dtypes {result.actual_dtype} (actual) vs "
        f"{result.expected_dtype} (expected)",
        f"  max abs error {result.max_abs:.3e}, max rel error {result.max_rel:.3e}, "
        f"worst at index {result.worst_index}",
        f"  {result.n_failing} of {result.size} elements ({fraction:.2%}) out of tolerance "
        f"rtol={result.rtol:g}, atol={result.atol:g}; margin {result.margin:.3g}",
    ])


def assert_close(actual: Any, expected: Any, *, rtol: float | None = None,
                 atol: float | None = None, name: str = "output") -> ParityResult:
    """Assert two arrays (torch, jax or numpy) are close; NaN/Inf positions must agree.

    Args:
        rtol, atol: override the dtype's default from `pytest_parity.tolerance`.
        name: how the report names this comparison.
    Raises:
        AssertionError: with a `[parity]` report of the errors, the tolerance and the margin.
    """
    __tracebackhide__ = True
    result = compare(actual, expected, rtol=rtol, atol=atol, name=name)
    records.emit(result.to_record())
    if not result.passed:
        raise AssertionError(format_failure(result))
    return result
