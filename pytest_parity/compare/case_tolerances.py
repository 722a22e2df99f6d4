"""The tolerance layers and the verdict of the running parity case (its marker's, then the
command line's).

The plugin applies them around each parity case's call (pytest_parity.case_context); every
comparison made inside reads them after the caller's own rtol/atol
(pytest_parity.compare.tolerance has the policy), and the sides read the verdict to know
whether to run their reference precision as well (pytest_parity.compare.budget). Outside a
pytest run no case is running: the defaults, the caller's tolerances and the automatic verdict
apply.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from pytest_parity import case_context
from pytest_parity.case_context import Verdict as Verdict
from pytest_parity.compare.budget import BUDGET_BY_DEFAULT, verdict_for
from pytest_parity.compare.tolerance import Layer


def current() -> Sequence[Layer]:
    """The running case's tolerance layers, in order; none outside a case."""
    return case_context.current().layers


def verdict(dtype: str, budget_by_default: tuple[str, ...] = BUDGET_BY_DEFAULT) -> str:
    """'budget' or 'fixed': how the running case judges a comparison in `dtype` (under the
    automatic verdict, the budget for the dtypes `budget_by_default` names)."""
    chosen = case_context.current().verdict
    if isinstance(chosen, Mapping):
        chosen = chosen.get(dtype, "auto")
    return verdict_for(dtype, chosen, budget_by_default)


@contextmanager
def applied(layers: Sequence[Layer], verdict: Verdict = "auto") -> Iterator[None]:
    """Apply these layers and this verdict to the comparisons made inside the block."""
    with case_context.entered(layers=tuple(layers), verdict=verdict):
        yield
