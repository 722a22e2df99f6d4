"""What a failing gradient or steps check says beyond its figures: what its branches showed
(pytest_parity.branches), which parameters differ, nearest the output first, and where the
backward pass parts ways."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from pytest_parity.branches import Branches, ParityBranchWarning
from pytest_parity.compare import REFERENCE_DTYPES, Comparison, ParityRecord, detail
from pytest_parity.errors import PREFIX
from pytest_parity.mapping import Mapping
from pytest_parity.run.diagnosed import concluded

SHOWN = 8  # the failing parameters a report lists
SHOWN_LEAVES = 12  # the failing leaves a bounded report lists
FULL_LEAVES = 2  # up to this many failing leaves, the report shows them in full


def concluded_with_branches(comparison: Comparison, branches: Branches, dtype: str,
                            kind: str, where: list[str], record: ParityRecord | None = None,
                            cause: Sequence[str] = ()) -> None:
    """Record the comparison with what its branches showed; raise its failure text (`cause`
    first, the report, bounded unless -v, the branches' lines, then `where`); warn where it
    passed only through the reference's branches."""
    __tracebackhide__ = True
    lines = branches.lines(dtype, REFERENCE_DTYPES.get(dtype, dtype), comparison.passed)
    record = (record or comparison.to_record()).with_fields(kind=kind,
                                                            branches=branches.to_record())
    try:
        concluded(comparison, lambda: None, record)
    except AssertionError as failure:
        report = [str(failure)] if detail.full() or len(comparison.failing) <= FULL_LEAVES \
            else summary_lines(comparison)
        raise AssertionError("\n".join([*cause, *report, *lines, *where])) from None
    if branches.set_apart:
        warnings.warn(ParityBranchWarning("\n".join([f"{comparison.name} passes", *lines])),
                      stacklevel=2)


def _flax_path(mapping: Mapping | None, key: str) -> str:
    found = None if mapping is None else mapping.correspondence([key]).get(key)
    if found is None:
        return "?"
    paths, _, collection, *_ = found
    return ", ".join(f"{collection}/{path}" for path in paths)


def _module(key: str) -> str:
    return key.rpartition(".")[0] or key


def parting_lines(comparison: Comparison, mapping: Mapping | None,
                  what: str = "parameters' gradients") -> list[str]:
    """Which parameters (`what` of them) differ, nearest the output first (torch's order of
    parameters is the order its modules are built, the forward order in most models), and
    between which modules the backward pass parts ways."""
    params = [leaf for leaf in comparison.leaves if leaf.path.startswith("params/")]
    failing = [index for index, leaf in enumerate(params) if not leaf.passed]
    if not failing:
        return []
    lines = [f"{PREFIX} {len(failing)} of {len(params)} {what} differ; nearest the output "
             "first:"]
    for index in reversed(failing[-SHOWN:]):
        key = params[index].path.removeprefix("params/")
        lines.append(f"  {key}  (module {_module(key)}; Flax {_flax_path(mapping, key)})  "
                     f"margin {params[index].margin:.3g}")
    if len(failing) > SHOWN:
        lines.append(f"  ... {len(failing) - SHOWN} more")
    key = params[failing[-1]].path.removeprefix("params/")
    later = [leaf.path.removeprefix("params/") for leaf in params[failing[-1] + 1:]
             if _module(leaf.path.removeprefix("params/")) != _module(key)]
    if later:
        lines.append(f"  every parameter from {_module(later[0])} to the output agrees: the "
                     f"backward pass parts ways between {_module(later[0])} and "
                     f"{_module(key)} (a stop_gradient or custom gradient there, an input "
                     f"that skips a module, or a ReLU/max whose input sits within rounding "
                     f"of its kink and so takes another subgradient)")
    else:
        lines.append(f"  {_module(key)} is the last module with parameters: the backward "
                     f"pass parts ways in it or after it, at the loss")
    return lines


def summary_lines(comparison: Comparison, shown: int = SHOWN_LEAVES) -> list[str]:
    """A bounded failure report: one line per failing leaf, worst first (the failure report
    in full under pytest -v and in the JSON report's figures)."""
    failing = sorted(comparison.failing, key=lambda leaf: -leaf.margin)
    lines = [f"{PREFIX} {comparison.name}: {len(failing)} of {len(comparison.leaves)} leaves "
             "not sufficiently close, worst first (every leaf in full under pytest -v):"]
    for leaf in failing[:shown]:
        lines.append(f"  {leaf.path}  margin {leaf.margin:.3g}  {leaf.n_failing} of "
                     f"{leaf.n_valid} elements out of tolerance  max abs {leaf.max_abs:.3e} "
                     f"({leaf.tolerance_from})")
    if len(failing) > shown:
        lines.append(f"  ... {len(failing) - shown} more leaves (in the JSON report)")
    return lines
