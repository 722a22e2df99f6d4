"""When a failing pair comparison is diagnosed: the running case's `--parity-trace` mode.

The plugin applies the run's mode around each parity case's call; outside a pytest run the
default applies (on failure).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pytest_parity.options import TRACE_MODES

DEFAULT = "on-failure"
_applied: list[str] = []


def current() -> str:
    """'on-failure', 'always' or 'off'."""
    return _applied[-1] if _applied else DEFAULT


def wanted(passed: bool) -> bool:
    """Whether a comparison that passed (or not) is to be diagnosed."""
    mode = current()
    return mode == "always" or (mode == "on-failure" and not passed)


@contextmanager
def applied(mode: str) -> Iterator[None]:
    if mode not in TRACE_MODES:
        raise ValueError(f"trace mode {mode!r} is not one of {', '.join(TRACE_MODES)}")
    _applied.append(mode)
    try:
        yield
    finally:
        _applied.pop()
