"""What a failing gradient or steps check says beyond its figures: what its branches showed
(pytest_parity.branches), which parameters differ, nearest the output first, and where the
backward pass parts ways."""

from __future__ import annotations

import warnings
from typing import Any

from pytest_parity.branches import Branches, ParityBranchWarning
from pytest_parity.compare import Comparison
from pytest_parity.compare.budget import REFERENCE_DTYPES
from pytest_parity.errors import PREFIX
from pytest_parity.mapping import Mapping
from pytest_parity.run.diagnosed import concluded

SHOWN = 8  # the failing parameters a report lists


def concluded_with_branches(comparison: Comparison, branches: Branches, dtype: str,
                            kind: str, where: list[str], record: dict[str, Any] | None = None
                            ) -> None:
    """Record the comparison with what its branches showed; raise its failure text (the
    branches' lines first, then `where`); warn where it passed only through the reference's
    branches."""
    __tracebackhide__ = True
    lines = branches.lines(dtype, REFERENCE_DTYPES.get(dtype, dtype))
    record = {**(record or comparison.to_record()), "kind": kind,
              "branches": branches.to_record()}
    try:
        concluded(comparison, lambda: None, record)
    except AssertionError as failure:
        raise AssertionError("\n".join([str(failure), *lines, *where])) from None
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


def parting_lines(comparison: Comparison, mapping: Mapping | None) -> list[str]:
    """Which parameters' gradients differ, nearest the output first (torch's order of
    parameters is the order its modules are built, the forward order in most models), and
    between which modules the backward pass parts ways."""
    params = [leaf for leaf in comparison.leaves if leaf.path.startswith("params/")]
    failing = [index for index, leaf in enumerate(params) if not leaf.passed]
    if not failing:
        return []
    lines = [f"{PREFIX} {len(failing)} of {len(params)} parameters' gradients differ; "
             "nearest the output first:"]
    for index in reversed(failing[-SHOWN:]):
        key = params[index].path.removeprefix("params/")
        lines.append(f"  {key}  (module {_module(key)}; Flax {_flax_path(mapping, key)})  "
                     f"margin {params[index].margin:.3g}")
    last = failing[-1]
    if last + 1 < len(params):
        key = params[last].path.removeprefix("params/")
        after = params[last + 1].path.removeprefix("params/")
        lines.append(f"  every parameter's gradient from {_module(after)} to the output "
                     f"agrees: the backward pass parts ways between {_module(after)} and "
                     f"{_module(key)} (a stop_gradient or custom gradient there, an input "
                     f"that skips a module, or a ReLU/max whose input sits within rounding "
                     f"of its kink and so takes another subgradient)")
    return lines
