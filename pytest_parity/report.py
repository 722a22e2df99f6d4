"""The parity report: a table after the run, and the same records as JSON for CI dashboards.

JSON schema (`--parity-report=FILE`), also in docs/report-schema.md:
    {"schema": "pytest-parity-report/8",
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
of the `n_valid`). `max_rel` is |a - e| / |e| over the elements whose expected value e is not
0 (an element expected 0 is judged by atol alone), so a passing record never has an infinite
one. Records are sorted by test id and comparison name, so runs with and without xdist
compare equal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_parity.atomic import write_atomically
from pytest_parity.environment import installed_versions

SCHEMA = "pytest-parity-report/8"


WIDTH = 120  # the terminal table's width at the default verbosity
LEGEND = "margin = |a - e| / (atol + rtol*|e|), <= 1 passes; max rel only where e != 0"
COMPARISON_KEPT = 16  # a cut name keeps this much of the comparison's own name at least
OWN_HEADING = 4  # a test function with this many rows gets a heading of its own


def _compact(number: str) -> str:
    """'5.25e-06' as '5.25e-6', '1.9e+06' as '1.9e+6': narrower columns leave the names room."""
    mantissa, marker, exponent = number.partition("e")
    if not marker:
        return number
    return f"{mantissa}e{exponent[0]}{exponent[1:].lstrip('0') or '0'}"


def _figure(value: float, digits: str = ".2e") -> str:
    if math.isinf(value) or math.isnan(value):
        return "-"
    return "0" if value == 0 else _compact(format(value, digits))


def own_parameters(record: Mapping[str, Any]) -> str:
    """The test's parameters without the device and dtype ones ('' where none are left)."""
    parameters = record["test"].partition("[")[2].removesuffix("]")
    shown = {record.get("device"), record.get("dtype")}
    return "-".join(token for token in parameters.split("-") if token and token not in shown)


def names_first(name: str, word: str) -> bool:
    """Whether a comparison's name begins with `word` ('resnet50 logits', 'resnet50: ...')."""
    return bool(word) and name.startswith((f"{word} ", f"{word}:"))


def short_test(record: Mapping[str, Any]) -> tuple[str, str]:
    """(the test's file, the test's name in it) with the device and dtype parameters left out:
    the table shows them in their own columns."""
    file, _, rest = record["test"].partition("::")
    function = rest.partition("[")[0]
    kept = own_parameters(record)
    return file, f"{function}[{kept}]" if kept else function


def label_parts(record: Mapping[str, Any]) -> tuple[str, str]:
    """(the test's short name, the comparison's own name without what the test's already
    says): `@parity_test` names repeat the function, zoo names the model parameter."""
    _, test = short_test(record)
    function, _, parameters = test.partition("[")
    name = record["name"].removeprefix(f"{function}:").strip()
    parameters = parameters.removesuffix("]")
    if names_first(name, parameters):
        name = name.removeprefix(parameters).removeprefix(":").strip()
    return test, "" if name in ("output", function) else name


def label(record: Mapping[str, Any], width: int | None = None, under: str = "") -> str:
    """'test::comparison' in `width` characters (`under` a heading that names the test
    function: without it). The comparison's name is cut at its end; the test's in its middle
    only where the test alone leaves the comparison too little room."""
    test, name = label_parts(record)
    if under and (test != under or name):  # a row with neither keeps the function's name
        test = test.removeprefix(under)
    whole = f"{test}::{name}" if test and name else test or name
    if width is None or len(whole) <= width:
        return whole
    if not (test and name):
        return _middle_cut(whole, width) if test else _fitted(whole, width)
    test = _middle_cut(test, max(width - 2 - min(len(name), COMPARISON_KEPT), 1))
    return _fitted(f"{test}::{name}", width)


def _tolerance(record: Mapping[str, Any]) -> str:
    if record.get("tolerance_from") == "budget":
        return "budget"
    rtol, atol = (_figure(record[which], ".2g") for which in ("rtol", "atol"))
    return f"{rtol}/{atol}"


def _cells(record: Mapping[str, Any], with_device: bool) -> list[str]:
    compared = "problem" not in record  # no values were compared
    return [*([record["device"] or "-"] if with_device else []),
            record["dtype"] or record["actual_dtype"] or "-",
            *([_figure(record["max_abs"]), _figure(record["max_rel"]), _tolerance(record),
               _figure(record["margin"], ".3g")] if compared else ["-"] * 4)]


def _fitted(text: str, width: int | None) -> str:
    return text if width is None or len(text) <= width else text[:width - 1] + "…"


def _middle_cut(text: str, width: int) -> str:
    """`text` in `width` characters, its middle left out: a test's start says which test,
    its end which parameters."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}…{text[len(text) - (width - 1 - head):]}"


Group = tuple[str, str, list[Mapping[str, Any]]]  # heading, the function it names or "", rows


def _groups(records: Sequence[Mapping[str, Any]]) -> list[Group]:
    """The records by test file, worst margin first; a function with `OWN_HEADING` rows or
    more under a 'file::function' heading of its own, so that its rows need not repeat it."""
    by_file: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for record in sorted(records, key=lambda r: -r["margin"]):
        file, test = short_test(record)
        by_file.setdefault(file, {}).setdefault(test.partition("[")[0], []).append(record)
    groups: list[Group] = []
    for file, functions in sorted(by_file.items()):
        few = [r for rows in functions.values() if len(rows) < OWN_HEADING for r in rows]
        if few:
            groups.append((file, "", sorted(few, key=lambda r: -r["margin"])))
        groups += [(f"{file}::{function}", function, rows)
                   for function, rows in sorted(functions.items()) if len(rows) >= OWN_HEADING]
    return groups


def format_table(report_records: Sequence[Mapping[str, Any]], width: int | None = WIDTH
                 ) -> list[tuple[str, bool]]:
    """The terminal table, as (line, is_failure) pairs: the failures first, then the passes,
    under their test file's name (worst margin first), then a one-line total and what margin
    means. Each row: the figures, right-aligned in fixed columns, the test and the comparison,
    the verdict. No line is wider than `width` (names are cut, never figures); None (-v):
    nothing is cut."""
    with_device = len({record["device"] for record in report_records if record["device"]}) > 1
    header = [*(["device"] if with_device else []), "dtype", "max abs", "max rel",
              "rtol/atol", "margin"]
    cells = {id(record): _cells(record, with_device) for record in report_records}
    widths = [max(len(row[column]) for row in [header, *cells.values()])
              for column in range(len(header))]
    sections = [(failed, _groups([r for r in report_records if r["passed"] != failed]))
                for failed in (True, False)]
    longest = max([len("test::comparison"), *(len(label(r, under=function))
                                               for _, groups in sections
                                               for _, function, rows in groups for r in rows)])
    figures_width = 2 + sum(widths) + 2 * (len(widths) - 1)
    name_width = longest if width is None else max(min(longest, width - figures_width - 8), 8)

    def line(row: list[str], name: str, verdict: str) -> str:
        figures = "  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
        name = name.ljust(name_width + 4 - len(verdict))  # verdicts right-aligned
        return _fitted(f"  {figures}  {name}  {verdict}".rstrip(), width)

    lines = [(line(header, "test::comparison", "verdict"), False)]
    for failed, groups in sections:
        for heading, function, rows in groups:
            lines.append((_fitted(f"{'FAILED ' if failed else ''}{heading} ({len(rows)})",
                                  width), failed))
            lines += [(line(cells[id(r)], label(r, name_width, function),
                            "FAIL" if failed else "PASS"), failed) for r in rows]
    failures = any(not record["passed"] for record in report_records)
    lines.append((total_line(report_records, width), failures))
    lines.append((_fitted(LEGEND, width), False))
    return lines


def total_line(report_records: Sequence[Mapping[str, Any]], width: int | None = WIDTH) -> str:
    """N comparisons, how many failed, the worst margin and where (its name cut to fit)."""
    failed = sum(not record["passed"] for record in report_records)
    worst = max(report_records, key=lambda record: record["margin"])
    count = len(report_records)
    margin = _figure(worst["margin"], ".3g") if math.isfinite(worst["margin"]) else "inf"
    text = (f"{count} comparison{'' if count == 1 else 's'}, {failed} failed, "
            f"worst margin {margin} (")
    room = None if width is None else max(width - len(text) - 1, 1)
    return f"{text}{label(worst, room)})"


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


def write_json(path: Path, report_records: Sequence[Mapping[str, Any]],
               settings: dict[str, Any] | None = None) -> None:
    """Write the report atomically: a temporary file beside it, then a rename."""
    ordered = sorted((dict(r) for r in report_records), key=lambda r: (r["test"], r["name"]))
    document = {"schema": SCHEMA, "versions": installed_versions(), "settings": settings or {},
                "records": ordered}
    text = json.dumps(_strict(document), indent=1, allow_nan=False)
    write_atomically(path, lambda temporary: temporary.write_text(text), overwrite=True)
