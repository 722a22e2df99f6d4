"""The failure report of a comparison: every failing leaf, worst margin first.

The format is pinned by tests (tests/unit/test_failure_report.py); for one leaf:

    [parity] logits/0: values are not sufficiently close
      shape (2, 3), dtypes float32 (actual) vs float32 (expected)
      worst element at index (1, 2): abs err 5.000e-01 where 1.000e-01 is allowed; margin 5
      max abs error 5.000e-01 at index (1, 2); max rel error inf at index (1, 2)
      2 of 6 elements (33.33%) out of tolerance rtol=0, atol=0.1 (from pair)
      1 position masked out
      worst elements:
        index   actual     expected   abs err    allowed
        (1, 2)  5.000e-01  0.000e+00  5.000e-01  1.000e-01

The worst element is the one of the largest margin (abs err / allowed), the table's first
row; the largest abs and rel errors may be other elements, so each names its own index. The
values are those compared, in the compared dtypes. A tree with several failing leaves starts
with one line that counts them.
"""

from __future__ import annotations

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


def format_leaf(name: str, leaf: ParityResult) -> list[str]:
    fraction = leaf.n_failing / leaf.size if leaf.size else 0.0
    where = f"{name}/{leaf.path}" if leaf.path else name
    lines = [
        f"{PREFIX} {where}: values are not sufficiently close",
        f"  shape {leaf.shape}, dtypes {leaf.actual_dtype} (actual) vs "
        f"{leaf.expected_dtype} (expected)",
        *_worst_line(leaf),
        f"  max abs error {leaf.max_abs:.3e} at index {leaf.max_abs_index}; "
        f"max rel error {leaf.max_rel:.3e} at index {leaf.max_rel_index}",
        f"  {leaf.n_failing} of {leaf.size} elements ({fraction:.2%}) out of tolerance "
        f"rtol={leaf.rtol:g}, atol={leaf.atol:g} (from {leaf.tolerance_from})",
    ]
    if leaf.n_masked:
        lines.append(f"  {leaf.n_masked} position{'s' if leaf.n_masked > 1 else ''} masked out")
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
