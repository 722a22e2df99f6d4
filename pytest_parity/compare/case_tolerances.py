"""The tolerance layers of the running parity case (its marker's, then the command line's).

The plugin applies them around each parity case's call; every comparison made inside reads
them after the caller's own rtol/atol (pytest_parity.compare.tolerance has the policy).
Outside a pytest run no case is running and only the defaults and the caller's apply.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pytest_parity.compare.tolerance import Layer

_applied: list[Sequence[Layer]] = []


def current() -> Sequence[Layer]:
    """The running case's tolerance layers, in order; none outside a case."""
    return _applied[-1] if _applied else ()


@contextmanager
def applied(layers: Sequence[Layer]) -> Iterator[None]:
    """Apply these layers to the comparisons made inside the block."""
    _applied.append(tuple(layers))
    try:
        yield
    finally:
        _applied.pop()
