"""Compare arrays and pytrees under one tolerance policy and say where and by how much they
differ: every failing leaf, worst first (the message format is in pytest_parity.compare.failure)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from pytest_parity.arrays import dtype_name
from pytest_parity.compare import case_tolerances, records
from pytest_parity.compare.budget import (
    BUDGET_BY_DEFAULT,
    REFERENCE_DTYPES,
    Budget,
    leaf_budget,
)
from pytest_parity.compare.failure import format_failure
from pytest_parity.compare.masks import LeafMask, masks_by_path
from pytest_parity.compare.tolerance import Layer, least_precise, resolve_layers
from pytest_parity.compare.trees import StructureMismatch, arrays_by_path
from pytest_parity.compare.verdict import (
    Comparison,
    Element,
    PaddingNote,
    ParityResult,
    problem_record,
)
from pytest_parity.errors import ParityDeprecationWarning, deprecated

WORST_SHOWN = 5


def _nonfinite_mismatch(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Positions where NaN or +/-Inf appear in one array but not at the same place in the other."""
    nan_mismatch = np.isnan(actual) != np.isnan(expected)
    inf_mismatch = np.isinf(actual) != np.isinf(expected)
    sign_mismatch = np.isinf(actual) & np.isinf(expected) & (np.sign(actual) != np.sign(expected))
    return nan_mismatch | inf_mismatch | sign_mismatch


def _padding_note(ratio: np.ndarray, worst_index: tuple[int, ...],
                  padding: LeafMask | None) -> PaddingNote | None:
    """Where a leaf compared in full fails and its worst element lies in padding: the hint."""
    if padding is None or not worst_index or padding.keep[worst_index]:
        return None
    failing = ratio > 1.0
    return PaddingNote(position=padding.position_of(worst_index),
                       n_failing_in_padding=int(np.count_nonzero(failing & ~padding.keep)),
                       margin_outside=float(np.where(padding.keep, ratio, 0.0).max()))


def _budget_of(actual: np.ndarray, expected: np.ndarray,
               reference: tuple[np.ndarray, np.ndarray] | None,
               mask: LeafMask | None, budget_by_default: tuple[str, ...],
               both_sides: bool) -> Budget | None:
    """The leaf's error budget, where both sides ran in their reference precision too and
    the running case judges this dtype by its budget."""
    dtype = least_precise(dtype_name(actual), dtype_name(expected))
    if reference is None or dtype not in REFERENCE_DTYPES \
            or case_tolerances.verdict(dtype, budget_by_default) != "budget":
        return None
    return leaf_budget(actual, expected, *reference, mask.keep if mask else None, dtype,
                       both_sides)


def compare_leaf(actual: np.ndarray, expected: np.ndarray, *, path: str = "",
                 rtol: float | None = None, atol: float | None = None,
                 mask: LeafMask | None = None, padding: LeafMask | None = None,
                 reference: tuple[np.ndarray, np.ndarray] | None = None,
                 budget_by_default: tuple[str, ...] = BUDGET_BY_DEFAULT,
                 both_sides: bool = False) -> ParityResult:
    """Compare two arrays of the same shape, counting only the elements `mask` keeps;
    `padding` (where the leaf has no mask) only informs the report of a failure;
    `reference` (both sides' outputs in their reference precision, as `actual`, `expected`)
    draws the leaf's error budget (pytest_parity.compare.budget), which judges the dtypes
    `budget_by_default` names unless the case chose a verdict (`both_sides`: see
    Budget.allowed_drift)."""
    dtypes = (dtype_name(actual), dtype_name(expected))
    budget = _budget_of(actual, expected, reference, mask, budget_by_default, both_sides)
    layers: list[Layer] = [("pair", rtol, atol), *case_tolerances.current()]
    if budget is not None and budget.measurable:
        layers.insert(0, ("budget", budget.rtol, budget.atol))
    tolerance, source = resolve_layers(dtypes, layers)
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    both_finite = np.isfinite(a) & np.isfinite(e)
    abs_err = np.abs(np.subtract(a, e, out=np.zeros_like(a), where=both_finite))
    allowed = tolerance.atol + tolerance.rtol * np.abs(np.where(both_finite, e, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        # Relative error only where the expected value is not 0: an element expected to be 0
        # has none (it would be infinite) and is judged by atol alone.
        rel_err = np.where((abs_err > 0) & (e != 0), abs_err / np.abs(e), 0.0)
        ratio = np.where(abs_err > 0, abs_err / allowed, 0.0)
    ratio = np.where(_nonfinite_mismatch(a, e), np.inf, ratio)
    if mask is not None:
        abs_err, rel_err, ratio = (np.where(mask.keep, x, 0.0) for x in (abs_err, rel_err, ratio))
    flat_ratio = ratio.reshape(-1)
    shown = min(WORST_SHOWN, flat_ratio.size)
    order = np.argpartition(-flat_ratio, shown - 1)[:shown] if shown else np.array([], int)
    order = order[np.argsort(-flat_ratio[order], kind="stable")]
    worst = tuple(
        Element(tuple(int(i) for i in np.unravel_index(int(flat), ratio.shape)),
                float(a.reshape(-1)[flat]), float(e.reshape(-1)[flat]),
                float(abs_err.reshape(-1)[flat]), float(allowed.reshape(-1)[flat]))
        for flat in order if flat_ratio[flat] > 1.0)
    def index_of(flat: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(flat, ratio.shape))

    element_margin = float(flat_ratio[order[0]]) if shown else 0.0
    judged_by_budget = budget is not None and source == "budget"

    return ParityResult(
        path=path, shape=tuple(actual.shape), actual_dtype=dtypes[0], expected_dtype=dtypes[1],
        max_abs=float(abs_err.max()) if abs_err.size else 0.0,
        max_rel=float(rel_err.max()) if rel_err.size else 0.0,
        max_abs_index=index_of(int(np.argmax(abs_err))) if abs_err.size else (),
        max_rel_index=index_of(int(np.argmax(rel_err))) if rel_err.size else (),
        worst_index=index_of(int(order[0])) if shown else (),
        rtol=tolerance.rtol, atol=tolerance.atol, tolerance_from=source,
        n_failing=int(np.count_nonzero(ratio > 1.0)), size=int(ratio.size),
        n_masked=mask.n_masked if mask else 0,
        n_masked_positions=mask.n_masked_positions if mask else 0,
        position_shape=tuple(mask.positions.shape) if mask else (),
        padding=_padding_note(ratio, worst[0].index, padding) if worst else None,
        margin=max(element_margin, budget.rms_margin) if judged_by_budget and budget
        else element_margin, worst=worst, budget=budget,
    )


def compare(actual: Any, expected: Any, *, rtol: float | None = None,
            atol: float | None = None, mask: Any = None, padding: Any = None,
            name: str = "output", reference: tuple[Any, Any] | None = None,
            budget_by_default: tuple[str, ...] = BUDGET_BY_DEFAULT,
            both_sides: bool = False) -> Comparison:
    """Compare two arrays or pytrees without raising on values (`assert_close` says what
    each argument takes; `budget_by_default`: the dtypes the automatic verdict judges by
    their budget, e.g. GRADIENT_BUDGET; `both_sides`: see Budget.allowed_drift).

    Raises:
        StructureMismatch: the structures or shapes differ, a mask fits none of the leaves it
            is given for, or a mask's key names no part of the output.
    """
    pairs = arrays_by_path(actual, expected, name)
    shapes = {path: a.shape for path, (a, _) in pairs.items()}
    masks = {} if mask is None else masks_by_path(mask, expected, shapes, name)
    paddings = {} if padding is None else masks_by_path(padding, expected, shapes, name,
                                                        strict=False, what="padding")
    references = {} if reference is None else arrays_by_path(*reference, f"{name} reference")
    results = [compare_leaf(a, e, path=path, rtol=rtol, atol=atol, mask=masks.get(path),
                            padding=None if path in masks else paddings.get(path),
                            reference=references.get(path),
                            budget_by_default=budget_by_default, both_sides=both_sides)
               for path, (a, e) in pairs.items()]
    return Comparison(name, tuple(results))


def compared(actual: Any, expected: Any, *, name: str = "output", **options: Any
             ) -> Comparison:
    """`compare`, where trees that cannot be compared are still a (failing) record of the
    report before the mismatch is raised: every comparison a test makes is recorded."""
    __tracebackhide__ = True
    try:
        return compare(actual, expected, name=name, **options)
    except StructureMismatch as mismatch:
        records.emit(problem_record(name, mismatch.summary()))
        raise


def assert_close(actual: Any, expected: Any, *, rtol: float | None = None,
                 atol: float | None = None, mask: Any = None, padding: Any = None,
                 name: str = "output", reference: tuple[Any, Any] | None = None
                 ) -> Comparison:
    """Assert two arrays or pytrees of arrays (torch, jax, numpy) are close.

    Structures and shapes are checked first; NaN/Inf positions must agree.

    Args:
        rtol, atol: this comparison's tolerance (the "pair" layer of
            pytest_parity.compare.tolerance; the parity marker and the command line override it).
        mask: booleans, True where an element counts (e.g. an attention mask): one array for
            every leaf it fits (its shape a prefix of the leaf's, or broadcasting to it), a
            tree of masks shaped like the output (None or a key left out: that leaf in full),
            or a function of the leaf's path returning its mask or None
            (pytest_parity.compare.masks). The failing count is of the valid elements; the
            report counts the masked positions and elements.
        padding: where the inputs are padding (e.g. the attention mask the inputs carry), in
            any form `mask` takes; only for the report: a leaf compared without a mask whose
            worst element lies in padding says so, and whether it passes without it.
        name: how the report names this comparison.
        reference: (actual, expected) as each side computed them in the reference precision
            (float32 for a bfloat16/float16 comparison) on the same rounded weights and
            inputs: a budget verdict (pytest_parity.compare.budget) where the case's verdict
            is the budget, the default for bfloat16 and float16.
    Raises:
        AssertionError: a `[parity]` report of every failing leaf, worst first.
    """
    __tracebackhide__ = True
    comparison = compared(actual, expected, rtol=rtol, atol=atol, mask=mask, padding=padding,
                          name=name, reference=reference)
    records.emit(comparison.to_record())
    if not comparison.passed:
        raise AssertionError(format_failure(comparison))
    return comparison


def assert_trees_close(actual: Any, expected: Any, **options: Any) -> Comparison:
    """Deprecated: `assert_close`, which takes trees as well; warns, then runs it."""
    __tracebackhide__ = True
    warnings.warn(deprecated("assert_trees_close", "assert_close (the same check)"),
                  ParityDeprecationWarning, stacklevel=2)
    return assert_close(actual, expected, **options)
