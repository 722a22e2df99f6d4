"""Where comparisons made during a test are kept until the plugin attaches them to its report.

`assert_close` emits each result here, and reads the tolerance layers of the running case
(marker, command line); the plugin opens a collection around each parity case's call.
Outside a pytest run (a script, a notebook) nothing is collecting: emit does nothing and only
the defaults and the caller's rtol/atol apply.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pytest_parity.tolerance import Layer


@dataclass
class Case:
    """What the running parity case collects, and the tolerance layers it adds."""

    layers: Sequence[Layer] = ()
    found: list[dict[str, Any]] = field(default_factory=list)


_current: Case | None = None


def emit(record: dict[str, Any]) -> None:
    """Keep one comparison's record if a test is being run by the plugin."""
    if _current is not None:
        _current.found.append(record)


def tolerance_layers() -> Sequence[Layer]:
    """The running case's tolerance layers after the caller's (marker, command line)."""
    return _current.layers if _current is not None else ()


@contextmanager
def collecting(layers: Sequence[Layer] = ()) -> Iterator[list[dict[str, Any]]]:
    """Collect the records emitted inside the block, under these tolerance layers."""
    global _current
    outer, _current = _current, Case(layers)
    try:
        yield _current.found
    finally:
        _current = outer
