"""The parity report: a table after the run, and the same records as JSON for CI dashboards.

JSON schema (`--parity-report=FILE`), also in docs/report-schema.md:
    {"schema": "pytest-parity-report/6",
     "versions": {"torch": "2.13.0+cpu" | null, ...},
     "settings": {"device": "cpu", "devices": ["cpu"], "dtypes": ["float32"], "rtol": null,
                  "atol": null, "seed": 0, "numerics": {"mode": "pinned", ...}},
     "records": [{"test": nodeid, "device": "cpu" | null, "dtype": "float32" | null,
                  "name", "leaves", "failing_leaves", "worst_leaf", "shape", "actual_dtype",
                  "expected_dtype", "max_abs", "max_rel", "worst_index", "rtol", "atol",
                  "tolerance_from", "n_failing", "size", "n_masked", "n_valid",
                  "n_masked_positions", "margin", "passed", "budget": {...} | null,
                  "kind": "gradients" | "steps" | "loss_down" (absent: outputs),
                  "diagnosis": {...} (only where --parity-trace diagnosed it)}, ...]}
One record per assert_close call: a tree's figures are its worst leaf's (max_abs, max_rel,
margin over all leaves; counts summed: `size` = `n_valid` + `n_masked` elements, `n_failing`
of the `n_valid`). Records are sorted by test id and comparison name, so
runs with and without xdist compare equal.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pytest_parity.atomic import write_atomically
from pytest_parity.environment import installed_versions

SCHEMA = "pytest-parity-report/6"


WIDTH = 120  # the terminal table's width at the default verbosity
LEGEND = "margin = |a - e| / (atol + rtol*|e|), <= 1 passes; max rel only where e != 0"


def _figure(value: float) -> str:
    return "-" if math.isinf(value) or math.isnan(value) else f"{value:.2e}"


def short_test(record: dict[str, Any]) -> tuple[str, str]:
    """(the test's file, the test's name in it) with the device and dtype parameters left out:
    the table shows them in their own columns."""
    file, _, rest = record["test"].partition("::")
    function, bracket, parameters = rest.partition("[")
    shown = {record.get("device"), record.get("dtype")}
    kept = [token for token in parameters.rstrip("]").split("-") if token not in shown]
    return file, f"{function}[{'-'.join(kept)}]" if bracket and kept else function


def label(record: dict[str, Any]) -> str:
    """The test's short name, then the comparison's own where it has one."""
    _, test = short_test(record)
    function, name = test.partition("[")[0], record["name"]
    name = name.removeprefix(f"{function}:").strip()  # @parity_test's names repeat the test's
    return test if name in ("output", function, "") else f"{test}::{name}"


def _cells(record: dict[str, Any], with_device: bool) -> list[str]:
    compared = "problem" not in record  # no values were compared
    tolerance = ("budget" if record.get("tolerance_from") == "budget"
                 else f"{record['rtol']:.2g}/{record['atol']:.2g}") if compared else "-"
    return [*([record["device"] or "-"] if with_device else []),
            record["dtype"] or record["actual_dtype"] or "-",
            _figure(record["max_abs"]) if compared else "-",
            _figure(record["max_rel"]) if compared else "-",
            tolerance, f"{record['margin']:.3g}" if compared else "-"]


def _fitted(text: str, width: int | None) -> str:
    return text if width is None or len(text) <= width else text[:width - 1] + "…"


def _middle_cut(text: str, width: int) -> str:
    """`text` in `width` characters, its middle left out: a name's start says which test,
    its end which comparison."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}…{text[len(text) - (width - 1 - head):]}"


def format_table(report_records: list[dict[str, Any]], width: int | None = WIDTH
                 ) -> list[tuple[str, bool]]:
    """The terminal table, as (line, is_failure) pairs: failures first, then each test
    file's comparisons (worst margin first) under the file's name, then a one-line total.
    Each row: the figures, the test and comparison (cut to fit), the verdict. No line is
    wider than `width` (names are cut, never figures); None: nothing is cut."""
    with_device = len({record["device"] for record in report_records if record["device"]}) > 1
    header = [*(["device"] if with_device else []), "dtype", "max abs", "max rel",
              "rtol/atol", "margin"]
    failures = sorted((r for r in report_records if not r["passed"]), key=lambda r: -r["margin"])
    by_file: dict[str, list[dict[str, Any]]] = {}
    for record in report_records:
        if record["passed"]:
            by_file.setdefault(short_test(record)[0], []).append(record)
    named = [(record, label(record)) for record in failures]
    for records in by_file.values():
        named += [(record, label(record)) for record in records]
    cells = {id(record): _cells(record, with_device) for record in report_records}
    widths = [max(len(row[column]) for row in [header, *cells.values()])
              for column in range(len(header))]
    figures_width = 2 + sum(widths) + 2 * (len(widths) - 1) + 2
    longest = max([len("test::comparison"), *(len(name) for _, name in named)])
    name_width = longest if width is None else min(longest, width - figures_width - 9)

    def line(row: list[str], name: str, verdict: str) -> str:
        figures = "  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
        return f"  {figures}  {_middle_cut(name, name_width).ljust(name_width)}  {verdict}".rstrip()

    names = dict((id(record), name) for record, name in named)
    lines = [(line(header, "test::comparison", "verdict"), False)]
    if failures:
        lines.append((f"failed ({len(failures)})", True))
        lines += [(line(cells[id(r)], names[id(r)], "FAIL"), True) for r in failures]
    for file, records in sorted(by_file.items()):
        lines.append((_fitted(f"{file} ({len(records)})", width), False))
        lines += [(line(cells[id(r)], names[id(r)], "PASS"), False)
                  for r in sorted(records, key=lambda r: -r["margin"])]
    lines.append((total_line(report_records, width), bool(failures)))
    lines.append((_fitted(LEGEND, width), False))
    return lines


def total_line(report_records: list[dict[str, Any]], width: int | None = WIDTH) -> str:
    """N comparisons, how many failed, the worst margin and where (its name cut to fit)."""
    failed = sum(not record["passed"] for record in report_records)
    worst = max(report_records, key=lambda record: record["margin"])
    count = len(report_records)
    text = (f"{count} comparison{'' if count == 1 else 's'}, {failed} failed, worst margin "
            f"{worst['margin']:.3g} (")
    room = None if width is None else width - len(text) - 1
    return f"{text}{_fitted(label(worst), room)})"


def _strict(value: Any) -> Any:
    """`value` with every non-finite float as the string 'inf', '-inf' or 'nan': JSON has no
    such numbers, and other readers refuse Python's `Infinity`."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def write_json(path: Path, report_records: list[dict[str, Any]],
               settings: dict[str, Any] | None = None) -> None:
    """Write the report atomically: a temporary file beside it, then a rename."""
    ordered = sorted(report_records, key=lambda r: (r["test"], r["name"]))
    document = {"schema": SCHEMA, "versions": installed_versions(), "settings": settings or {},
                "records": ordered}
    text = json.dumps(_strict(document), indent=1, allow_nan=False)
    write_atomically(path, lambda temporary: temporary.write_text(text), overwrite=True)
