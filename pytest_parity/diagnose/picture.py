"""A picture of one trace: every aligned module's error in execution order, the tolerance line
and the culprit, as a PNG beside the JSON report (matplotlib, imported when drawing)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_parity.atomic import write_atomically

FLOOR = 1e-12  # where an exact match is drawn on the log scale
CEILING = 1e12  # where an infinite margin (NaN where the other side has a number) is drawn
LABEL_WIDTH = 24  # characters of a module's name under its tick, rotated


def _drawn(margin: float | None) -> float:
    """A margin as the log scale can show it; a module not compared is a gap (NaN)."""
    return float("nan") if margin is None else min(max(margin, FLOOR), CEILING)


def picture_path(report: Path, test: str, name: str, taken: set[Path] | None = None) -> Path:
    """`report.json` -> `report.<test id>.<comparison>.png`, with a file-safe name; a name in
    `taken` gets a number (two failures of one test with one comparison name)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{test}.{name}").strip("_")[:150]
    path, count = report.with_name(f"{report.stem}.{safe}.png"), 1
    while taken is not None and path in taken:
        count += 1
        path = report.with_name(f"{report.stem}.{safe}.{count}.png")
    if taken is not None:
        taken.add(path)
    return path


def module_labels(modules: Sequence[Mapping[str, Any]], width: int = LABEL_WIDTH) -> list[str]:
    """The x axis' labels: each module's torch name ("(root)" for the model itself), a long one
    kept to its last dotted parts within `width` characters after an ellipsis."""
    labels = []
    for module in modules:
        name = module["torch"] or "(root)"
        if len(name) > width:
            parts, kept = name.split("."), ""
            while parts and len(parts[-1]) + len(kept) + 2 <= width:
                kept = f"{parts.pop()}.{kept}" if kept else parts.pop()
            name = f"…{kept or name[-(width - 1):]}"
        labels.append(name)
    return labels


def trace_figure(record: Mapping[str, Any]) -> Any:
    """The record's trace (its `diagnosis`) as a matplotlib figure, one tick a module, labelled
    with its name.

    The y axis is the margin (error / allowed error) on a log scale, so that one line, at 1,
    is every module's tolerance. Natural: both sides run as they are; alone: the Flax module
    run on the torch module's inputs (the verdict that finds the culprit).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    diagnosis = record["diagnosis"]
    modules = diagnosis["modules"]
    culprit = (diagnosis["culprit"] or {}).get("torch")
    positions = range(len(modules))
    natural = [_drawn(m["output_margin"]) for m in modules]
    alone = [(i, _drawn(m["alone_margin"])) for i, m in enumerate(modules)
             if m["alone_margin"] is not None]
    figure, axes = plt.subplots(figsize=(max(8.0, len(modules) * 0.14), 6.0))
    axes.semilogy(positions, natural, ".-", color="tab:blue", linewidth=0.8,
                  label="output margin, both sides as they run")
    if alone:
        axes.semilogy(*zip(*alone, strict=True), "o", color="tab:orange",
                      label="output margin, Flax module on torch's inputs")
    axes.axhline(1.0, color="tab:red", linestyle="--", linewidth=1, label="tolerance")
    for index, module in enumerate(modules):
        if culprit is not None and module["torch"] == culprit:
            axes.axvline(index, color="tab:red", alpha=0.3, linewidth=6)
            height = _drawn(module["alone_margin"] or module["output_margin"] or 1.0)
            axes.annotate(f"first divergent: {culprit or '(root)'}", (index, height),
                          textcoords="offset points", xytext=(8, 8), color="tab:red")
    axes.set_xticks(list(positions))
    axes.set_xticklabels(module_labels(modules), rotation=90, fontsize=7)
    axes.set_xlim(-0.5, len(modules) - 0.5)
    axes.set_xlabel("aligned modules (torch's names), in torch's execution order")
    axes.set_ylabel("error / allowed error")
    axes.set_title(f"{record.get('test', '')} {record['name']}"[-110:], fontsize=9)
    axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    return figure


def draw_trace(record: Mapping[str, Any], path: Path) -> Path:
    """Draw the record's trace (`trace_figure`) to `path`, atomically."""
    from matplotlib import pyplot as plt

    figure = trace_figure(record)
    try:
        write_atomically(path, lambda temporary: figure.savefig(temporary, format="png",
                                                                dpi=100), overwrite=True)
    finally:
        plt.close(figure)
    return path
