"""The parity report as a picture: one marker per comparison, its margin on a log axis, a row
per model and dtype, the tolerance line at margin 1, failures in red. Written beside the JSON
report (`--parity-report=FILE.json` -> FILE.png), where a table of a hundred rows is hard to
read. matplotlib is imported only here, and only when a picture is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_parity.atomic import write_atomically

FLOOR, CEILING = 1e-4, 1e4  # margins outside are drawn at the edge (0: bit for bit)


def picture_path(report: Path) -> Path:
    return report.with_suffix(".png")


def _groups(records: list[dict[str, Any]], group_of: Callable[[dict[str, Any]], str]
            ) -> dict[str, list[dict[str, Any]]]:
    """Records by 'model, dtype', in alphabetical order from the bottom up (the picture
    reads top-down: see `draw`)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        dtype = record.get("dtype") or record.get("actual_dtype") or "-"
        groups.setdefault(f"{group_of(record)}, {dtype}", []).append(record)
    return dict(sorted(groups.items(), reverse=True))


def _shown(margin: float) -> float:
    if math.isnan(margin) or margin > CEILING:
        return CEILING
    return max(margin, FLOOR)


def draw(records: list[dict[str, Any]], path: Path,
         group_of: Callable[[dict[str, Any]], str]) -> Path:
    """Draw the records' margins into the PNG at `path` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    groups = _groups(records, group_of)
    figure, axes = plt.subplots(figsize=(10, 1.2 + 0.38 * len(groups)), dpi=110)
    for row, members in enumerate(groups.values()):
        for index, record in enumerate(members):
            offset = ((index % 7) - 3) * 0.06  # spread a row's markers so that they stay visible
            margin = record["margin"]
            failed = not record["passed"]
            marker = "x" if failed else ("<" if margin < FLOOR else
                                         ">" if _shown(margin) == CEILING else "o")
            axes.scatter(_shown(margin), row + offset, s=36 if failed else 22, marker=marker,
                         color="#d62728" if failed else "#1f77b4", alpha=0.85,
                         linewidths=1.5 if failed else 0.5, zorder=3)
    axes.axvline(1.0, color="#444444", linestyle="--", linewidth=1, zorder=2)
    axes.text(1.08, len(groups) - 0.4, "tolerance (margin 1)", fontsize=8, color="#444444",
              va="top")
    axes.set_xscale("log")
    axes.set_xlim(FLOOR / 2, CEILING * 2)
    axes.set_yticks(range(len(groups)))
    axes.set_yticklabels([f"{name} ({len(members)})" for name, members in groups.items()],
                         fontsize=8)
    axes.set_ylim(-0.7, len(groups) - 0.3)
    axes.set_xlabel("margin = worst |a - e| / (atol + rtol*|e|)   (< 1 passes; "
                    f"< {FLOOR:g} or bit for bit at the left edge, > {CEILING:g} at the right)",
                    fontsize=8)
    failures = sum(not record["passed"] for record in records)
    axes.set_title(f"parity report: {len(records)} comparisons, {failures} failed "
                   "(blue: pass, red x: fail)", fontsize=10)
    axes.grid(axis="x", which="major", alpha=0.3)
    figure.tight_layout()
    try:
        write_atomically(path, lambda temporary: figure.savefig(temporary, format="png"),
                         overwrite=True)
    finally:
        plt.close(figure)
    return path
