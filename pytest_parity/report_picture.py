"""The parity report as a picture: one marker per comparison, its margin on a log axis, a row
per model and dtype, the tolerance line at margin 1, failures in red. Written beside the JSON
report (`--parity-report=FILE.json` -> FILE.png), where a table of a hundred rows is hard to
read. matplotlib is imported only here, and only when a picture is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_parity.atomic import write_atomically
from pytest_parity.report import names_first, own_parameters, short_test

PASS_COLOUR, FAIL_COLOUR = "#1f77b4", "#d62728"
SPREAD = 7  # a row's markers take this many heights, so that equal margins stay visible


def picture_path(report: Path) -> Path:
    return report.with_suffix(".png")


def model_of(record: Mapping[str, Any], known_models: Iterable[str] = ()) -> str:
    """The model a record compares: the pair it names (`pair`: a loaded pair's comparisons, an
    NNX twin's apart from its Linen twin's); else the longest known model (a registered pair)
    that its test's parameters or its comparison's name give; else the test's own parameter
    that the comparison's name starts with (a zoo test parametrized by model, under
    pytest-xdist where the controller registered nothing); else its test file's name (a layer
    catalogue)."""
    if record.get("pair"):
        return str(record["pair"])
    tokens = record["test"].partition("[")[2].removesuffix("]").split("-")
    name = record["name"]
    named = [model for model in known_models if model in tokens or names_first(name, model)]
    if named:
        return max(named, key=len)
    own = own_parameters(record)
    if names_first(name, own):
        return own
    return Path(short_test(record)[0]).stem.removeprefix("test_")


def _groups(records: Sequence[Mapping[str, Any]], group_of: Callable[[Mapping[str, Any]], str]
            ) -> dict[str, list[Mapping[str, Any]]]:
    """Records by 'model, dtype', in alphabetical order from the bottom up (the picture
    reads top-down: see `draw`)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        dtype = record.get("dtype") or record.get("actual_dtype") or "-"
        groups.setdefault(f"{group_of(record)}, {dtype}", []).append(record)
    return dict(sorted(groups.items(), reverse=True))


def axis_range(margins: list[float]) -> tuple[float, float]:
    """Where the axis ends: every positive finite margin inside, the tolerance line well inside;
    0 and non-finite margins are drawn at these edges."""
    finite = [m for m in margins if math.isfinite(m) and m > 0]
    low = min([*finite, 1e-2]) / 4
    high = max([*finite, 10.0]) * 4
    return low, high


def _place(margin: float, low: float, high: float) -> tuple[float, str]:
    """Where a margin is drawn and with which marker: '<' at the left edge for 0 (bit for
    bit), '>' at the right for infinite or not a number (nothing could be compared)."""
    if math.isnan(margin) or math.isinf(margin):
        return high, ">"
    return (low, "<") if margin <= 0 else (margin, "o")


def draw(records: Sequence[Mapping[str, Any]], path: Path,
         group_of: Callable[[Mapping[str, Any]], str]) -> Path:
    """Draw the records' margins into the PNG at `path` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    groups = _groups(records, group_of)
    low, high = axis_range([record["margin"] for record in records])
    height = 1.8 + 0.3 * len(groups)  # inches: a row is a line of 8-point labels and more
    figure, axes = plt.subplots(figsize=(10, height), dpi=110)
    for row, members in enumerate(groups.values()):
        for index, record in enumerate(members):
            failed = not record["passed"]
            where, marker = _place(record["margin"], low, high)
            if failed and marker == "o":
                marker = "X"
            offset = ((index % SPREAD) - SPREAD // 2) * 0.05
            axes.scatter(where, row + offset, s=44 if failed else 20, marker=marker,
                         color=FAIL_COLOUR if failed else PASS_COLOUR, alpha=0.8,
                         linewidths=0.4, zorder=3)
    axes.axvline(1.0, color="#444444", linestyle="--", linewidth=1, zorder=2)
    axes.text(1.1, len(groups) - 0.55, "tolerance: margin 1", fontsize=8, color="#444444",
              va="top")
    for row in range(0, len(groups), 2):  # bands, so that a row's label finds its markers
        axes.axhspan(row - 0.5, row + 0.5, color="#f2f2f2", zorder=0)
    axes.set_xscale("log")
    axes.set_xlim(low / 1.8, high * 1.8)
    axes.set_yticks(range(len(groups)))
    axes.set_yticklabels([f"{name} ({len(members)})" for name, members in groups.items()],
                         fontsize=8)
    axes.set_ylim(-0.5, len(groups) - 0.5)
    axes.set_xlabel("margin = worst |a - e| / (atol + rtol*|e|), <= 1 passes", fontsize=9)
    failures = sum(not record["passed"] for record in records)
    axes.set_title(f"parity report: {len(records)} comparisons, {failures} failed, "
                   "by model and dtype", fontsize=10)
    axes.grid(axis="x", which="major", alpha=0.3)
    keys = [("o", PASS_COLOUR, "pass"), ("X", FAIL_COLOUR, "fail"),
            ("<", PASS_COLOUR, "margin 0 (bit for bit)"),
            (">", FAIL_COLOUR, "margin inf or nan (not compared)")]
    figure.legend(handles=[Line2D([], [], linestyle="", marker=marker, color=colour, label=text)
                           for marker, colour, text in keys],
                  loc="lower center", ncol=4, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.35 / height, 1, 1))  # the legend's line below the axes
    try:
        write_atomically(path, lambda temporary: figure.savefig(temporary, format="png"),
                         overwrite=True)
    finally:
        plt.close(figure)
    return path
