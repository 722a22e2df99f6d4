"""How much a long failure report shows: a bounded summary, or every leaf in full (`-v`).

The plugin applies the run's verbosity around each parity case's call; outside a pytest run
the summary applies. The JSON report always has every leaf's figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_applied: list[bool] = []


def full() -> bool:
    """Whether failure reports show every failing leaf in full (pytest -v)."""
    return _applied[-1] if _applied else False


@contextmanager
def applied(everything: bool) -> Iterator[None]:
    _applied.append(everything)
    try:
        yield
    finally:
        _applied.pop()
