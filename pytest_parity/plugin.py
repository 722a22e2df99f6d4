"""The pytest plugin: options, the `parity` marker, device fixtures and the parity report.

Kept thin and light: importing it imports neither torch nor jax (nor numpy); the frameworks
load when a parity test first needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_parity import options, records
from pytest_parity import report as parity_report

RECORDS_PROPERTY = "parity_records"
devices_key = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("parity", "numerical parity between torch and jax/flax")
    group.addoption(
        "--parity-device", metavar="DEVICE", type=options.parse_device, default=None,
        help="device of parity cases: cpu, gpu, all (cpu and gpu; gpu skipped where absent) "
             "or auto (gpu when torch and jax both see one). Default: the parity_device ini "
             "value, else cpu.",
    )
    group.addoption(
        "--parity-report", metavar="FILE", default=None,
        help="write every parity comparison of the run to FILE as JSON. Default: none.",
    )
    parser.addini("parity_device", "default for --parity-device", default="cpu")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "parity: a numerical parity case between a torch model and its jax/flax port.",
    )
    requested = config.getoption("parity_device") or options.parse_device(
        config.getini("parity_device"))
    from pytest_parity import devices

    try:
        config.stash[devices_key] = devices.resolve_devices(requested)
    except RuntimeError as error:
        raise pytest.UsageError(str(error)) from None
    config.pluginmanager.register(ReportCollector(config), "parity-report")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "parity_device" in metafunc.fixturenames:
        devices: list[str] = metafunc.config.stash[devices_key]
        metafunc.parametrize("parity_device", devices, indirect=True)


@pytest.fixture
def parity_device(request: pytest.FixtureRequest) -> str:
    """The device of this parity case: 'cpu' or 'gpu' (skipped where a framework lacks one)."""
    device: str = getattr(request, "param", "cpu")
    if device == "gpu":
        from pytest_parity import devices

        problems = devices.gpu_problems()
        if problems:
            pytest.skip("; ".join(problems))
    return device


def is_parity_case(item: pytest.Item) -> bool:
    """Marked `parity`, or using a parity fixture: its comparisons go into the report."""
    fixtures = getattr(item, "fixturenames", ())
    return item.get_closest_marker("parity") is not None or "parity_device" in fixtures


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    if not is_parity_case(item):
        return (yield)
    with records.collecting() as found:
        try:
            return (yield)
        finally:
            if found:
                params = getattr(item, "callspec", None)
                case = params.params if params else {}
                for record in found:
                    record.update(device=case.get("parity_device"),
                                  dtype=case.get("parity_dtype"))
                # user_properties travel with the report, also from xdist workers.
                item.user_properties.append((RECORDS_PROPERTY, found))


class ReportCollector:
    """Gathers the records of every test (from xdist workers too) and reports them at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == RECORDS_PROPERTY:
                found: list[dict[str, Any]] = value  # type: ignore[assignment]
                self.records.extend({**record, "test": report.nodeid} for record in found)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput"):
            return
        if self.records:
            terminalreporter.write_sep("=", f"parity report: {len(self.records)} comparisons")
            for line in parity_report.format_table(self.records):
                terminalreporter.write_line(line)
        path = self.config.getoption("parity_report")
        if path:
            parity_report.write_json(Path(path), self.records)
            terminalreporter.write_line(f"parity report written to {path}")
