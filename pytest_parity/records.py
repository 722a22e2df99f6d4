"""Where comparisons made during a test are kept until the plugin attaches them to its report.

`assert_close` emits each result here; the plugin opens a collection around each test's call.
Outside a pytest run (a script, a notebook) nothing is collecting and emit does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_collected: list[dict[str, Any]] | None = None


def emit(record: dict[str, Any]) -> None:
    """Keep one comparison's record if a test is being run by the plugin."""
    if _collected is not None:
        _collected.append(record)


@contextmanager
def collecting() -> Iterator[list[dict[str, Any]]]:
    """Collect the records emitted inside the block."""
    global _collected
    outer, _collected = _collected, []
    try:
        yield _collected
    finally:
        _collected = outer
