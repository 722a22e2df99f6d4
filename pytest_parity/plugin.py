"""The pytest plugin: options, the `parity` marker and its cases, pinned numerics, fixtures,
and the parity report.

Kept thin and light: importing it imports neither torch nor jax (nor numpy); the frameworks
load when a parity case first needs them.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from pytest_parity import case_context, cases, jax_cache, numerics, progress
from pytest_parity import report as parity_report
from pytest_parity.errors import PREFIX, ParityError
from pytest_parity.fixtures import (  # noqa: F401 (pytest finds fixtures by module attribute)
    golden,
    parity_checkpoint,
    parity_device,
    parity_dtype,
    parity_golden,
    parity_pair,
    parity_seed,
)
from pytest_parity.parity_record import ParityRecord

RECORDS_PROPERTY = "parity_records"
METAVARS = {"parity_dtype": "DTYPES", "parity_numerics": "MODE", "parity_trace": "WHEN",
            "parity_jax_cache": "DIR", "parity_verdict": "HOW"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("parity", "numerical parity between torch and jax/flax")
    for dest, parse, _, text in cases.OPTIONS:
        metavar = METAVARS.get(dest, dest.removeprefix("parity_").upper())
        group.addoption(f"--{dest.replace('_', '-')}", dest=dest, metavar=metavar, type=parse,
                        default=None, help=f"{text} ini: {dest}.")
        # Unset is '': the default applies in cases.read_settings, after any old ini name.
        parser.addini(dest, f"default for --{dest.replace('_', '-')}", default="")
    for old, new in cases.DEPRECATED_INI.items():  # registered, or --strict-config rejects it
        parser.addini(old, f"deprecated: use {new}", default="")
    group.addoption(
        "--parity-report", metavar="FILE", default=None,
        help="write every parity comparison of the run to FILE as JSON. Default: none.",
    )
    group.addoption(
        "--parity-update-golden", action="store_true", default=False,
        help="rewrite golden outputs that differ or are missing (the test still fails, for "
             "review). Never under CI=true.",
    )
    parser.addini("parity_golden_dir", "directory of golden outputs, relative to the rootdir",
                  default="reference_outputs")
    group.addoption(
        "--parity-bench-gate", action="store_true", default=False,
        help="fail the session when a benchmark ratio exceeds its limit ([tool.parity] gates "
             "in pyproject.toml, or @pytest.mark.parity_gate); prints the table.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "parity(devices=None, dtypes=None, rtol=None, atol=None, verdict=None): a numerical "
        "parity case between a torch model and its jax/flax port; limits its devices and "
        "dtypes, sets its tolerance (a number or {dtype: number}) and how it is judged "
        "(auto, budget or fixed, or {dtype: one of them}).",
    )
    settings = cases.read_settings(config)
    from pytest_parity import devices

    try:
        config.stash[cases.DEVICES] = devices.resolve_devices(settings.device)
    except RuntimeError as error:
        raise pytest.UsageError(str(error)) from None
    config.stash[cases.SETTINGS] = settings
    for option, value in (("--parity-report", config.getoption("parity_report")),
                          ("--parity-jax-cache", settings.jax_cache)):
        problem = value and _path_problem(Path(value), wants_directory=option != "--parity-report")
        if problem:
            raise pytest.UsageError(f"{PREFIX} {option}={value}: {problem}")
    config.pluginmanager.register(ReportCollector(config), "parity-report")
    config.addinivalue_line(
        "markers", "parity_gate(baseline, limit): fail --parity-bench-gate runs when this "
                   "benchmark's time exceeds limit x the baseline benchmark's (same parameters).")
    if config.getoption("parity_bench_gate"):
        from pytest_parity import gates
        from pytest_parity.project import parity_table

        _, table = parity_table(config.rootpath)
        config.pluginmanager.register(gates.GateChecker(gates.declared_gates(table)),
                                      "parity-gates")


def _path_problem(path: Path, *, wants_directory: bool) -> str:
    """Why `path` cannot become the file (or the directory) an option names, before any test
    runs; '' where nothing stands in the way."""
    blocker = next((parent for parent in reversed(path.parents)
                    if parent.exists() and not parent.is_dir()), None)
    if blocker is not None:
        return f"{blocker} is a file, not a directory"
    if wants_directory and path.exists() and not path.is_dir():
        return "a file is in its place; give a directory"
    if not wants_directory and path.is_dir():
        return f"a directory is in its place; give a file, e.g. {path / 'parity-report.json'}"
    return ""


def pytest_sessionstart(session: pytest.Session) -> None:
    """Long steps (pytest_parity.progress) say what they did on the terminal, past pytest's
    capture (as its live logging does); xdist workers have no terminal."""
    config = session.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if hasattr(config, "workerinput"):
        progress.send_to(None)
    elif reporter is None:
        progress.send_to(progress.to_stderr)
    else:
        def to_terminal(line: str) -> None:
            with capture.global_and_fixture_disabled() if capture else nullcontext():
                reporter.write_line(line)

        progress.send_to(to_terminal)


def pytest_unconfigure(config: pytest.Config) -> None:
    progress.send_to(progress.to_stderr)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    try:
        spec = cases.read_marker(metafunc.definition.get_closest_marker("parity"))
    except ValueError as error:
        problem = f"{metafunc.definition.nodeid}: {error}"
    else:
        problem = ""
    if problem:  # failed outside the handler: the message once, without the chained one
        pytest.fail(problem, pytrace=False)
    argnames = [name for name in ("parity_device", "parity_dtype")
                if name in metafunc.fixturenames]
    if argnames:
        settings = metafunc.config.stash[cases.SETTINGS]
        metafunc.parametrize(
            argnames, cases.case_params(metafunc.config.stash[cases.DEVICES], settings.dtypes,
                                        spec, argnames), indirect=True)


def is_parity_case(item: pytest.Item) -> bool:
    """Marked `parity`, or using a parity fixture: its comparisons go into the report."""
    fixtures = getattr(item, "fixturenames", ())
    return item.get_closest_marker("parity") is not None or "parity_device" in fixtures \
        or "parity_dtype" in fixtures


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """A parity case's process-wide settings (jax's persistent cache, cuBLAS's workspace) from
    its setup to its teardown, and never over the user's own; restored after it."""
    if not is_parity_case(item):
        return (yield)
    settings = item.config.stash[cases.SETTINGS]
    with numerics.process_applied(settings.numerics), \
            jax_cache.applied(settings.jax_cache, explicit=settings.jax_cache_explicit):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    if not is_parity_case(item):
        return (yield)
    settings = item.config.stash[cases.SETTINGS]
    with numerics.applied(settings.numerics, settings.seed):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    if not is_parity_case(item):
        return (yield)
    settings = item.config.stash[cases.SETTINGS]
    spec = cases.read_marker(item.get_closest_marker("parity"))
    found: list[ParityRecord] = []
    running = case_context.CaseContext(
        layers=(spec.layer(), *settings.layers()),
        verdict=cases.case_verdict(settings.verdict, spec), trace=settings.trace,
        detail=item.config.get_verbosity() > 0, records=found)
    with numerics.applied(settings.numerics, settings.seed), case_context.entered(running):
        try:
            return (yield)
        finally:
            if found:
                params = getattr(item, "callspec", None)
                case = params.params if params else {}
                placed = [record.with_fields(device=case.get("parity_device"),
                                             dtype=case.get("parity_dtype")).to_dict()
                          for record in found]
                # user_properties travel with the report, also from xdist workers: as the
                # plain dicts xdist can send.
                item.user_properties.append((RECORDS_PROPERTY, placed))


class ReportCollector:
    """Gathers the records of every test (from xdist workers too) and reports them at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: list[ParityRecord] = []
        self.written: list[str] = []  # what writing the JSON report said

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == RECORDS_PROPERTY:
                found: list[dict[str, Any]] = value  # type: ignore[assignment]
                self.records.extend(ParityRecord.from_dict(record).with_fields(test=report.nodeid)
                                    for record in found)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write the JSON report (and the trace pictures) while the exit status can still
        say that it failed."""
        path = self.config.getoption("parity_report")
        if not path or hasattr(self.config, "workerinput"):
            return
        settings = self.config.stash[cases.SETTINGS]
        try:
            parity_report.write_json(
                Path(path), self.records,
                {**settings.to_record(), "devices": self.config.stash[cases.DEVICES],
                 "numerics": numerics.describe(settings.numerics, settings.seed)})
            self.written = [f"parity report written to {path}",
                            *_draw_report(Path(path), self.records),
                            *_draw_traces(Path(path), self.records)]
        except ParityError as error:  # the disk refused (checked at start, it may fill up)
            self.written = [str(error)]
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput"):
            return
        if self.records:
            count = len(self.records)
            terminalreporter.write_sep(
                "=", f"parity report: {count} comparison{'' if count == 1 else 's'}")
            width = None if self.config.get_verbosity() > 0 else parity_report.WIDTH
            for line, failed in parity_report.format_table(self.records, width):
                terminalreporter.write_line(line, red=failed)
        for line in self.written:
            terminalreporter.write_line(line, red=line.startswith(PREFIX))


def _draw_report(report: Path, found: list[ParityRecord]) -> list[str]:
    """The report's picture beside it: every comparison's margin, by model and dtype."""
    from importlib.util import find_spec

    if not found:
        return []
    if find_spec("matplotlib") is None:
        return ["no parity picture: matplotlib is not installed (pip install matplotlib)"]
    from functools import partial

    from pytest_parity import registry
    from pytest_parity.report_picture import draw, model_of, picture_path

    try:
        known = registry.registered_names()
    except ParityError:  # an unreadable pair table: records' own pair names still group them
        known = []
    group_of = partial(model_of, known_models=known)
    return [f"parity picture written to {draw(found, picture_path(report), group_of)}"]


def _draw_traces(report: Path, found: list[ParityRecord]) -> list[str]:
    """A PNG beside the JSON report for each diagnosed failure."""
    traced = [r for r in found if not r.passed and r.diagnosis]
    if not traced:
        return []
    from importlib.util import find_spec

    if find_spec("matplotlib") is None:
        return [f"no trace pictures: matplotlib is not installed ({len(traced)} traced)"]
    from pytest_parity.diagnose import draw_trace, picture_path

    taken: set[Path] = set()
    return [f"trace picture written to "
            f"{draw_trace(record, picture_path(report, record.test or '', record.name, taken))}"
            for record in traced]
