"""Where the comparisons made during a test are kept until the plugin attaches them to its
report.

`assert_close` emits each comparison's record here; the plugin collects around each parity
case's call. Outside a pytest run (a script, a notebook) nothing is collecting and emit does
nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_collecting: list[list[dict[str, Any]]] = []


def emit(record: dict[str, Any]) -> None:
    """Keep one comparison's record if a test is being run by the plugin."""
    if _collecting:
        _collecting[-1].append(record)


@contextmanager
def collecting() -> Iterator[list[dict[str, Any]]]:
    """Collect the records emitted inside the block (the innermost block collects)."""
    found: list[dict[str, Any]] = []
    _collecting.append(found)
    try:
        yield found
    finally:
        _collecting.pop()
