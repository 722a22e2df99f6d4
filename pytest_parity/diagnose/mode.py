"""When a failing pair comparison is diagnosed: the running case's `--parity-trace` mode.

The plugin applies the run's mode around each parity case's call (pytest_parity.case_context);
outside a pytest run the default applies (on failure).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pytest_parity import case_context
from pytest_parity.options import TRACE_MODES


def current() -> str:
    """'on-failure', 'always' or 'off'."""
    return case_context.current().trace


def wanted(passed: bool) -> bool:
    """Whether a comparison that passed (or not) is to be diagnosed."""
    mode = current()
    return mode == "always" or (mode == "on-failure" and not passed)


def checked(mode: str) -> str:
    """`mode`, once it is known to be one of the trace modes."""
    if mode not in TRACE_MODES:
        raise ValueError(f"trace mode {mode!r} is not one of {', '.join(TRACE_MODES)}")
    return mode


@contextmanager
def applied(mode: str) -> Iterator[None]:
    with case_context.entered(trace=checked(mode)):
        yield
