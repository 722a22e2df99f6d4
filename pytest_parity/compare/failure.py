"""The failure report of a comparison: every failing leaf, worst margin first.

The format is pinned by tests (tests/unit/test_failure_report.py, tests/unit/test_masks.py);
for one leaf compared under a mask (batch, tokens):

    [parity] outputs/last_hidden_state: values are not sufficiently close
      shape (2, 3, 4), dtypes float32 (actual) vs float32 (expected)
      worst element at index (1, 0, 2): abs err 5.000e-01 where 1.000e-01 is allowed; margin 5
      max abs error 5.000e-01 at index (1, 0, 2); max rel error inf at index (1, 0, 2)
      1 of 20 valid elements (5.00%) out of tolerance rtol=0, atol=0.1 (from pair)
      masked out: 1 of 6 positions (2, 3), 4 of 24 elements
      worst elements:
        index      actual     expected   abs err    allowed
        (1, 0, 2)  5.000e-01  0.000e+00  5.000e-01  1.000e-01

The failing count is of the valid elements (those the mask keeps); a leaf without a mask says
"2 of 6 elements". A mask over every axis counts elements only ("masked out: 1 of 6 elements").
A leaf compared in full whose worst element lies where `padding=` is 0 says so after the worst
element line (in one line, wrapped here), and whether the leaf passes without the padding:

      worst element is in padding (padding mask 0 at position (1, 2)); pass mask= to compare
      only real positions
      all 4 failing elements are in padding: without the padding this leaf passes

A leaf judged by its error budget (pytest_parity.compare.budget; bfloat16 and float16 by
default) adds what the budget is made of, after the counts:

      budget (float32 reference): cross rms 2.437e-02, allowed 2 x torch's drift rms
      1.101e-02 = 2.202e-02; margin 1.11
      every element within 4 x torch's largest drift 3.906e-02 (atol above)
      Flax drifts 2.1x as far as torch from its own float32 (rms 2.312e-02): it rounds
      where torch does not

The worst element is the one of the largest margin (abs err / allowed), the table's first
row; the largest abs and rel errors may be other elements, so each names its own index. The
values are those compared, in the compared dtypes. A tree with several failing leaves starts
with one line that counts them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pytest_parity.compare.budget import MAX_FACTOR, RMS_FACTOR
from pytest_parity.compare.verdict import Comparison, ParityResult
from pytest_parity.errors import PREFIX


def _table(rows: Sequence[tuple[str, ...]], indent: str) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                               ).rstrip() for row in rows]


def _worst_line(leaf: ParityResult) -> list[str]:
    if not leaf.worst:  # nothing out of tolerance: no worst element to show
        return []
    worst = leaf.worst[0]
    return [f"  worst element at index {worst.index}: abs err {worst.abs_err:.3e} where "
            f"{worst.allowed:.3e} is allowed; margin {leaf.margin:.3g}"]


def _padding_lines(leaf: ParityResult) -> list[str]:
    note = leaf.padding
    if note is None:
        return []
    lines = [f"  worst element is in padding (padding mask 0 at position {note.position}); "
             "pass mask= to compare only real positions"]
    if note.n_failing_in_padding == leaf.n_failing:
        return [*lines, f"  all {leaf.n_failing:,} failing elements are in padding: without "
                        "the padding this leaf passes"]
    outside = leaf.n_failing - note.n_failing_in_padding
    return [*lines, f"  {note.n_failing_in_padding:,} of {leaf.n_failing:,} failing elements "
                    f"are in padding; without them {outside:,} still "
                    f"{'fails' if outside == 1 else 'fail'} (worst margin "
                    f"{note.margin_outside:.3g})"]


def _count_lines(leaf: ParityResult) -> list[str]:
    """How many elements fail, of those compared; how many positions and elements the mask
    takes out."""
    tolerance = f"rtol={leaf.rtol:g}, atol={leaf.atol:g} (from {leaf.tolerance_from})"
    if not leaf.n_masked:
        fraction = leaf.n_failing / leaf.size if leaf.size else 0.0
        return [f"  {leaf.n_failing:,} of {leaf.size:,} elements ({fraction:.2%}) out of "
                f"tolerance {tolerance}"]
    fraction = leaf.n_failing / leaf.n_valid if leaf.n_valid else 0.0
    elements = f"{leaf.n_masked:,} of {leaf.size:,} elements"
    n_positions = math.prod(leaf.position_shape)
    masked = elements if n_positions == leaf.size else (
        f"{leaf.n_masked_positions:,} of {n_positions:,} positions {leaf.position_shape}, "
        f"{elements}")
    return [f"  {leaf.n_failing:,} of {leaf.n_valid:,} valid elements ({fraction:.2%}) out of "
            f"tolerance {tolerance}", f"  masked out: {masked}"]


def _budget_lines(leaf: ParityResult) -> list[str]:
    """What the leaf's error budget is made of, where the budget judged it."""
    budget = leaf.budget
    if budget is None or leaf.tolerance_from != "budget":
        return []
    whose = "both sides' drift" if budget.both_sides else "torch's drift"
    allowed = budget.allowed_drift
    rms = (f"cross rms {budget.cross_rms:.3e}, allowed {RMS_FACTOR:g} x {whose} rms "
           f"{allowed.rms:.3e} = {RMS_FACTOR * allowed.rms:.3e}; margin "
           f"{budget.rms_margin:.3g}" if budget.rms_judged else
           f"{budget.n} elements, too few for an rms: the element bound alone")
    lines = [f"  budget ({budget.reference_dtype} reference): {rms}",
             f"  every element within {MAX_FACTOR:g} x "
             f"{'either side' if budget.both_sides else 'torch'}'s largest drift "
             f"{allowed.max:.3e} and one {budget.dtype} step (atol, rtol above)"]
    ratio = budget.flax.rms / budget.torch.rms if budget.torch.rms else float("inf")
    if ratio > RMS_FACTOR / 2 ** 0.5:  # more than an independent rounding of torch's size
        lines.append(f"  Flax drifts {ratio:.2g}x as far as torch from its own "
                     f"{budget.reference_dtype} (rms {budget.flax.rms:.3e}): it rounds where "
                     "torch does not")
    return lines


def format_leaf(name: str, leaf: ParityResult) -> list[str]:
    where = f"{name}/{leaf.path}" if leaf.path else name
    lines = [
        f"{PREFIX} {where}: values are not sufficiently close",
        f"  shape {leaf.shape}, dtypes {leaf.actual_dtype} (actual) vs "
        f"{leaf.expected_dtype} (expected)",
        *_worst_line(leaf),
        *_padding_lines(leaf),
        f"  max abs error {leaf.max_abs:.3e} at index {leaf.max_abs_index}; " + (
            f"max rel error {leaf.max_rel:.3e} at index {leaf.max_rel_index}"
            if leaf.max_rel > 0 or leaf.max_abs == 0 else
            "no rel error (each differing element is expected 0)"),
        *_count_lines(leaf),
        *_budget_lines(leaf),
    ]
    if leaf.worst:
        rows: list[tuple[str, ...]] = [("index", "actual", "expected", "abs err", "allowed")]
        rows += [(str(e.index), f"{e.actual:.3e}", f"{e.expected:.3e}", f"{e.abs_err:.3e}",
                  f"{e.allowed:.3e}") for e in leaf.worst]
        lines += ["  worst elements:", *_table(rows, "    ")]
    return lines


def format_failure(comparison: Comparison) -> str:
    """The message of a failed comparison."""
    failing = comparison.failing
    lines = []
    if len(comparison.leaves) > 1:
        lines.append(f"{PREFIX} {comparison.name}: {len(failing)} of {len(comparison.leaves)} "
                     "leaves not sufficiently close (worst first)")
    for leaf in failing:
        lines += format_leaf(comparison.name, leaf)
    return "\n".join(lines)
