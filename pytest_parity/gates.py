"""Benchmark gates: ratios of two benchmarks measured in the same run, each with a limit.

Absolute times drift between runs and machines; a ratio to a baseline timed in the same run
does not. Gates are declared in one place, the project's pyproject.toml:

    [[tool.parity.gates]]
    name = "pair ready / raw .h5 read (ResNet-50)"
    measure = "test_pair_ready[resnet50]"        # a benchmark's name (with its parameters)
    baseline = "test_raw_h5py_read[resnet50]"
    limit = 3.0

or on a benchmark, against a baseline with the same parameters:
`@pytest.mark.parity_gate(baseline="test_raw_h5py_read", limit=3.0)`. A name ending in `:key`
reads `benchmark.extra_info[key]` (a memory figure, a count) instead of the time. Times compare
by their minimum, usually the least noisy statistic; a gate may say `stat = "median"` where
one side's minimum swings more than its median (measured: torch's forward on a shared CPU).
With `--parity-bench-gate` the session fails, with the table, when a measured ratio exceeds
its limit, or when no gate was measured at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

MARKER = "parity_gate"
STATS = ("min", "median", "mean")


@dataclass(frozen=True)
class Gate:
    name: str
    measure: str
    baseline: str
    limit: float
    stat: str = "min"


@dataclass(frozen=True)
class Verdict:
    gate: Gate
    measured: float | None
    baseline: float | None

    @property
    def ratio(self) -> float | None:
        if self.measured is None or not self.baseline:
            return None
        return self.measured / self.baseline

    @property
    def status(self) -> str:
        if self.ratio is None:
            return "not measured"
        return "PASS" if self.ratio <= self.gate.limit else "FAIL"


def declared_gates(table: dict[str, Any]) -> list[Gate]:
    """The gates of a [tool.parity] table.

    Raises:
        pytest.UsageError: a gate without its keys, or a limit that is not a positive number.
    """
    gates = []
    for index, entry in enumerate(table.get("gates", [])):
        missing = [key for key in ("measure", "baseline", "limit") if key not in entry]
        limit = entry.get("limit")
        if missing or not isinstance(limit, (int, float)) or limit <= 0:
            raise pytest.UsageError(
                f"[tool.parity] gates[{index}]: needs measure, baseline and a positive limit "
                f"(missing {missing or 'none'}, limit {limit!r}); e.g. measure = "
                "\"test_pair_ready[resnet50]\", baseline = \"test_raw_h5py_read[resnet50]\", "
                "limit = 3.0")
        stat = entry.get("stat", "min")
        if stat not in STATS:
            raise pytest.UsageError(f"[tool.parity] gates[{index}]: stat = {stat!r}; one of "
                                    f"{', '.join(STATS)}, e.g. stat = \"median\"")
        gates.append(Gate(entry.get("name", f"{entry['measure']} / {entry['baseline']}"),
                          entry["measure"], entry["baseline"], float(limit), stat))
    return gates


def marker_gates(items: list[pytest.Item]) -> list[Gate]:
    """The gates that benchmarks declare with @pytest.mark.parity_gate(baseline=, limit=)."""
    gates = []
    for item in items:
        marker = item.get_closest_marker(MARKER)
        if marker is None:
            continue
        baseline, limit = marker.kwargs.get("baseline"), marker.kwargs.get("limit")
        if not isinstance(baseline, str) or not isinstance(limit, (int, float)) or limit <= 0:
            raise pytest.UsageError(f"{item.nodeid}: parity_gate takes baseline=\"test_name\" "
                                    f"and a positive limit=, got {marker.kwargs}")
        name = item.name
        params = name[name.index("["):] if "[" in name else ""
        if "[" not in baseline:
            baseline += params
        gates.append(Gate(f"{name} / {baseline}", name, baseline, float(limit)))
    return gates


def _figure(benchmarks: dict[str, Any], reference: str, stat: str) -> float | None:
    name, _, key = reference.partition(":")
    bench = benchmarks.get(name)
    if bench is None:
        return None
    if key:
        value = bench.extra_info.get(key)
        return float(value) if value is not None else None
    return float(getattr(bench.stats, stat))


def judge(gates: list[Gate], benchmarks: dict[str, Any]) -> list[Verdict]:
    return [Verdict(gate, _figure(benchmarks, gate.measure, gate.stat),
                    _figure(benchmarks, gate.baseline, gate.stat)) for gate in gates]


def _shown(value: float | None, reference: str) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if ":" in reference else f"{value * 1e3:.1f} ms"


def format_table(verdicts: list[Verdict]) -> list[str]:
    rows = [("gate", "ratio", "limit", "measured", "baseline", "verdict")]
    for verdict in sorted(verdicts, key=lambda v: -(v.ratio or 0) / v.gate.limit):
        ratio = verdict.ratio
        rows.append((verdict.gate.name, "-" if ratio is None else f"{ratio:.2f}",
                     f"{verdict.gate.limit:g}", _shown(verdict.measured, verdict.gate.measure),
                     _shown(verdict.baseline, verdict.gate.baseline), verdict.status))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows]


class GateChecker:
    """Registered with --parity-bench-gate: judges the gates after the run."""

    def __init__(self, gates: list[Gate]) -> None:
        self.gates = gates
        self.verdicts: list[Verdict] = []

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        self.gates = self.gates + marker_gates(items)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        benchmark_session = getattr(session.config, "_benchmarksession", None)
        benchmarks = {bench.name: bench for bench in getattr(benchmark_session, "benchmarks", [])
                      if not bench.has_error}
        self.verdicts = judge(self.gates, benchmarks)
        measured = [v for v in self.verdicts if v.ratio is not None]
        if not measured or any(v.status == "FAIL" for v in measured):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        failed = [v for v in self.verdicts if v.status == "FAIL"]
        measured = [v for v in self.verdicts if v.ratio is not None]
        title = (f"parity benchmark gates: {len(failed)} of {len(measured)} measured exceeded"
                 if measured else "parity benchmark gates: none measured (benchmarks not "
                                  "selected, or not timed: --benchmark-disable)")
        terminalreporter.write_sep("=", title, red=bool(failed) or not measured,
                                   green=bool(measured) and not failed)
        for line in format_table(self.verdicts):
            terminalreporter.write_line(line)
