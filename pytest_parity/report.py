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


def _fmt(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2e}"


def format_table(report_records: list[dict[str, Any]]) -> list[str]:
    """One line per comparison, worst margin first."""
    rows = [("test", "device", "dtype", "max abs", "max rel", "rtol", "atol", "from", "margin",
             "verdict")]
    for record in sorted(report_records, key=lambda r: -r["margin"]):
        name = record["name"]
        test = record["test"] if name == "output" else f"{record['test']}::{name}"
        figures = (("-",) * 6 if "problem" in record else (  # no values were compared
            _fmt(record["max_abs"]), _fmt(record["max_rel"]), f"{record['rtol']:g}",
            f"{record['atol']:g}", record.get("tolerance_from", "-"), f"{record['margin']:.3g}"))
        rows.append((test, record["device"] or "-", record["dtype"] or record["actual_dtype"]
                     or "-", *figures, "PASS" if record["passed"] else "FAIL"))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows]


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
