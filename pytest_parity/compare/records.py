"""Where the comparisons made during a test are kept until the plugin attaches them to its
report.

`assert_close` emits each comparison's record into the running case's list
(pytest_parity.case_context); the plugin collects around each parity case's call. Outside a
pytest run (a script, a notebook) nothing is collecting and emit does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pytest_parity import case_context
from pytest_parity.parity_record import ParityRecord


def emit(record: ParityRecord) -> None:
    """Keep one comparison's record if a test is being run by the plugin."""
    found = case_context.current().records
    if found is not None:
        found.append(record)


@contextmanager
def collecting() -> Iterator[list[ParityRecord]]:
    """Collect the records emitted inside the block (the innermost block collects)."""
    found: list[ParityRecord] = []
    with case_context.entered(records=found):
        yield found
