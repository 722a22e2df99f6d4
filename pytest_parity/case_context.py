"""The running parity case: one frozen object in a context variable, read by every comparison
made inside the case.

The plugin enters one context around each parity case's call (`entered`); outside a pytest run
(a script, a notebook) the defaults apply: no tolerance layers beyond the caller's, the
automatic verdict, diagnosis on failure, the bounded failure summary, and nothing collecting
records. A context variable is per thread: `pytest_parity.threads` runs its work in a copy of
the caller's context, so a comparison made in a worker thread sees the case.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

# A layer of the tolerance policy: its name, and its rtol and atol (None where it says
# nothing; a {dtype: value} mapping where it differs by dtype). pytest_parity.compare.tolerance
# has the policy.
Layer = tuple[str, "float | Mapping[str, float] | None", "float | Mapping[str, float] | None"]

# 'auto', 'budget' or 'fixed', or {dtype: one of them} (a marker's per-dtype choice).
Verdict = str | Mapping[str, str]


@dataclass(frozen=True)
class CaseContext:
    """What the running case asks of the comparisons made inside it."""

    layers: tuple[Layer, ...] = ()  # the marker's, then the command line's
    verdict: Verdict = "auto"
    trace: str = "on-failure"  # --parity-trace: 'on-failure', 'always' or 'off'
    detail: bool = False  # failure reports show every failing leaf in full (pytest -v)
    # Where the case's comparison records are collected; None: nothing is collecting. The list
    # is shared (not copied) by the contexts derived from this one, worker threads' included.
    records: list[Any] | None = None


DEFAULT = CaseContext()  # outside a case (frozen: one instance serves every thread)
_current: ContextVar[CaseContext] = ContextVar("parity_case", default=DEFAULT)


def current() -> CaseContext:
    """The running case's context; the defaults outside a case."""
    return _current.get()


@contextmanager
def entered(context: CaseContext | None = None, **changes: Any) -> Iterator[CaseContext]:
    """Run the block in `context` (the current one where not given) with these fields changed."""
    chosen = replace(context if context is not None else _current.get(), **changes)
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)
