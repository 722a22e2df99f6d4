"""The tolerance layers and the verdict of the running parity case (its marker's, then the
command line's).

The plugin applies them around each parity case's call; every comparison made inside reads
them after the caller's own rtol/atol (pytest_parity.compare.tolerance has the policy), and
the sides read the verdict to know whether to run their reference precision as well
(pytest_parity.compare.budget). Outside a pytest run no case is running: the defaults, the
caller's tolerances and the automatic verdict apply.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from pytest_parity.compare.budget import BUDGET_BY_DEFAULT, verdict_for
from pytest_parity.compare.tolerance import Layer

# 'auto', 'budget' or 'fixed', or {dtype: one of them} (a marker's per-dtype choice).
Verdict = str | Mapping[str, str]

_applied: list[tuple[Sequence[Layer], Verdict]] = []


def current() -> Sequence[Layer]:
    """The running case's tolerance layers, in order; none outside a case."""
    return _applied[-1][0] if _applied else ()


def verdict(dtype: str, budget_by_default: tuple[str, ...] = BUDGET_BY_DEFAULT) -> str:
    """'budget' or 'fixed': how the running case judges a comparison in `dtype` (under the
    automatic verdict, the budget for the dtypes `budget_by_default` names)."""
    chosen = _applied[-1][1] if _applied else "auto"
    if isinstance(chosen, Mapping):
        chosen = chosen.get(dtype, "auto")
    return verdict_for(dtype, chosen, budget_by_default)


@contextmanager
def applied(layers: Sequence[Layer], verdict: Verdict = "auto") -> Iterator[None]:
    """Apply these layers and this verdict to the comparisons made inside the block."""
    _applied.append((tuple(layers), verdict))
    try:
        yield
    finally:
        _applied.pop()
