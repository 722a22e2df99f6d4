"""One line for each long step a user waits on: generating or converting a large checkpoint,
the first compile of a big model. Saying what is happening, and how long it took, is the
difference between a run that is working and one that looks hung.

A step is announced only when it takes longer than `LONG_S`; under pytest the line goes to the
terminal (the plugin sets the sink: pytest's capture would hide a print), elsewhere (the
`parity` command line) to stderr. Nothing is announced from pytest-xdist workers: their
output reaches no terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

LONG_S = 2.0
_sink: list[Callable[[str], None] | None] = []


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def send_to(sink: Callable[[str], None] | None) -> None:
    """Where the lines go from now on (None: nowhere)."""
    _sink[:] = [sink]


def announce(line: str) -> None:
    sink = _sink[0] if _sink else to_stderr
    if sink is not None:
        sink(line)


@contextmanager
def timed(what: str, *, long_s: float = LONG_S) -> Iterator[None]:
    """Time the block; if it took longer than `long_s`, announce 'what (N.N s)'."""
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    if seconds > long_s:
        announce(f"[parity] {what} ({seconds:.1f} s)")
