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

The worst element is the one of the largest margin (abs err / allowed), the table's first
row; the largest abs and rel errors may be other elements, so each names its own index. The
values are those compared, in the compared dtypes. A tree with several failing leaves starts
with one line that counts them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
                    f"are in padding; without them {outside:,} still fail (worst margin "
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


def format_leaf(name: str, leaf: ParityResult) -> list[str]:
    where = f"{name}/{leaf.path}" if leaf.path else name
    lines = [
        f"{PREFIX} {where}: values are not sufficiently close",
        f"  shape {leaf.shape}, dtypes {leaf.actual_dtype} (actual) vs "
        f"{leaf.expected_dtype} (expected)",
        *_worst_line(leaf),
        *_padding_lines(leaf),
        f"  max abs error {leaf.max_abs:.3e} at index {leaf.max_abs_index}; "
        f"max rel error {leaf.max_rel:.3e} at index {leaf.max_rel_index}",
        *_count_lines(leaf),
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
