"""How much a long failure report shows: a bounded summary, or every leaf in full (`-v`).

The plugin applies the run's verbosity around each parity case's call
(pytest_parity.case_context); outside a pytest run the summary applies. The JSON report always
has every leaf's figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pytest_parity import case_context


def full() -> bool:
    """Whether failure reports show every failing leaf in full (pytest -v)."""
    return case_context.current().detail


@contextmanager
def applied(everything: bool) -> Iterator[None]:
    with case_context.entered(detail=everything):
        yield
