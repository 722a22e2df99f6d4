"""Compare arrays and pytrees under one tolerance policy and say where and by how much they
differ: every failing leaf, worst first (the message format is in pytest_parity.failure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_parity import records
from pytest_parity.arrays import dtype_name
from pytest_parity.failure import format_failure
from pytest_parity.tolerance import resolve_layers
from pytest_parity.trees import arrays_by_path, fit_mask

WORST_SHOWN = 5


@dataclass(frozen=True)
class Element:
    """One element of a leaf, as the failure report's table shows it."""

    index: tuple[int, ...]
    actual: float
    expected: float
    abs_err: float
    allowed: float


@dataclass(frozen=True)
class ParityResult:
    """The verdict on one leaf: the errors, the tolerance, and the margin between them."""

    path: str
    shape: tuple[int, ...]
    actual_dtype: str
    expected_dtype: str
    max_abs: float
    max_rel: float
    worst_index: tuple[int, ...]
    rtol: float
    atol: float
    tolerance_from: str
    n_failing: int
    size: int
    n_masked: int
    # Worst |actual - expected| / (atol + rtol * |expected|): <= 1 passes.
    margin: float
    worst: tuple[Element, ...]

    @property
    def passed(self) -> bool:
        return self.n_failing == 0


@dataclass(frozen=True)
class Comparison:
    """The verdict on a whole tree (or one array: one leaf with path '')."""

    name: str
    leaves: tuple[ParityResult, ...]

    @property
    def failing(self) -> list[ParityResult]:
        """The failing leaves, worst margin first."""
        return sorted((leaf for leaf in self.leaves if not leaf.passed), key=lambda r: -r.margin)

    @property
    def worst_leaf(self) -> ParityResult:
        return max(self.leaves, key=lambda leaf: leaf.margin)

    @property
    def passed(self) -> bool:
        return all(leaf.passed for leaf in self.leaves)

    @property
    def margin(self) -> float:
        return self.worst_leaf.margin

    @property
    def max_abs(self) -> float:
        return max(leaf.max_abs for leaf in self.leaves)

    @property
    def max_rel(self) -> float:
        return max(leaf.max_rel for leaf in self.leaves)

    @property
    def n_failing(self) -> int:
        return sum(leaf.n_failing for leaf in self.leaves)

    def to_record(self) -> dict[str, Any]:
        """The report's record: the worst leaf's figures, with counts over every leaf."""
        worst = self.worst_leaf
        return {
            "name": self.name, "leaves": len(self.leaves),
            "failing_leaves": [leaf.path for leaf in self.failing],
            "worst_leaf": worst.path, "shape": list(worst.shape),
            "actual_dtype": worst.actual_dtype, "expected_dtype": worst.expected_dtype,
            "max_abs": self.max_abs, "max_rel": self.max_rel,
            "worst_index": list(worst.worst_index), "rtol": worst.rtol, "atol": worst.atol,
            "tolerance_from": worst.tolerance_from, "n_failing": self.n_failing,
            "size": sum(leaf.size for leaf in self.leaves),
            "n_masked": sum(leaf.n_masked for leaf in self.leaves),
            "margin": self.margin, "passed": self.passed,
        }


def _nonfinite_mismatch(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Positions where NaN or +/-Inf appear in one array but not at the same place in the other."""
    nan_mismatch = np.isnan(actual) != np.isnan(expected)
    inf_mismatch = np.isinf(actual) != np.isinf(expected)
    sign_mismatch = np.isinf(actual) & np.isinf(expected) & (np.sign(actual) != np.sign(expected))
    return nan_mismatch | inf_mismatch | sign_mismatch


def compare_leaf(actual: np.ndarray, expected: np.ndarray, *, path: str = "",
                 rtol: float | None = None, atol: float | None = None,
                 mask: np.ndarray | None = None) -> ParityResult:
    """Compare two arrays of the same shape; `mask` (bool, same shape) keeps the True ones."""
    dtypes = (dtype_name(actual), dtype_name(expected))
    tolerance, source = resolve_layers(dtypes, [("pair", rtol, atol),
                                                *records.tolerance_layers()])
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    both_finite = np.isfinite(a) & np.isfinite(e)
    abs_err = np.abs(np.subtract(a, e, out=np.zeros_like(a), where=both_finite))
    allowed = tolerance.atol + tolerance.rtol * np.abs(np.where(both_finite, e, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_err = np.where(abs_err > 0, abs_err / np.abs(e), 0.0)  # inf where expected is 0
        ratio = np.where(abs_err > 0, abs_err / allowed, 0.0)
    ratio = np.where(_nonfinite_mismatch(a, e), np.inf, ratio)
    n_masked = 0
    if mask is not None:
        n_masked = int(mask.size - np.count_nonzero(mask))
        abs_err, rel_err, ratio = (np.where(mask, x, 0.0) for x in (abs_err, rel_err, ratio))
    flat_ratio = ratio.reshape(-1)
    shown = min(WORST_SHOWN, flat_ratio.size)
    order = np.argpartition(-flat_ratio, shown - 1)[:shown] if shown else np.array([], int)
    order = order[np.argsort(-flat_ratio[order], kind="stable")]
    worst = tuple(
        Element(tuple(int(i) for i in np.unravel_index(int(flat), ratio.shape)),
                float(a.reshape(-1)[flat]), float(e.reshape(-1)[flat]),
                float(abs_err.reshape(-1)[flat]), float(allowed.reshape(-1)[flat]))
        for flat in order if flat_ratio[flat] > 1.0)
    return ParityResult(
        path=path, shape=tuple(actual.shape), actual_dtype=dtypes[0], expected_dtype=dtypes[1],
        max_abs=float(abs_err.max()) if abs_err.size else 0.0,
        max_rel=float(rel_err.max()) if rel_err.size else 0.0,
        worst_index=(tuple(int(i) for i in np.unravel_index(int(order[0]), ratio.shape))
                     if shown else ()),
        rtol=tolerance.rtol, atol=tolerance.atol, tolerance_from=source,
        n_failing=int(np.count_nonzero(ratio > 1.0)), size=int(ratio.size), n_masked=n_masked,
        margin=float(flat_ratio[order[0]]) if shown else 0.0, worst=worst,
    )


def compare(actual: Any, expected: Any, *, rtol: float | None = None,
            atol: float | None = None, mask: Any = None, name: str = "output") -> Comparison:
    """Compare two arrays or pytrees without raising on values.

    Raises:
        AssertionError: the structures or shapes differ, or the mask fits no leaf.
    """
    pairs = arrays_by_path(actual, expected, name)
    results = []
    for path, (a, e) in pairs.items():
        where = f"{name}/{path}" if path else name
        fitted = None if mask is None else fit_mask(mask, a.shape, where)
        results.append(compare_leaf(a, e, path=path, rtol=rtol, atol=atol, mask=fitted))
    return Comparison(name, tuple(results))


def assert_close(actual: Any, expected: Any, *, rtol: float | None = None,
                 atol: float | None = None, mask: Any = None, name: str = "output"
                 ) -> Comparison:
    """Assert two arrays or pytrees of arrays (torch, jax, numpy) are close.

    Structures and shapes are checked first; NaN/Inf positions must agree.

    Args:
        rtol, atol: this comparison's tolerance (the "pair" layer of pytest_parity.tolerance;
            the parity marker and the command line override it).
        mask: booleans, True where an element counts (e.g. an attention mask); its shape is
            the leaves' shape, a prefix of it, or broadcasts to it. The report counts the
            positions masked out.
        name: how the report names this comparison.
    Raises:
        AssertionError: a `[parity]` report of every failing leaf, worst first.
    """
    __tracebackhide__ = True
    comparison = compare(actual, expected, rtol=rtol, atol=atol, mask=mask, name=name)
    records.emit(comparison.to_record())
    if not comparison.passed:
        raise AssertionError(format_failure(comparison))
    return comparison


# The same check, named for what it is given: trees of arrays (Flax variables, outputs).
assert_trees_close = assert_close
