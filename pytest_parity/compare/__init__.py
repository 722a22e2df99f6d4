"""Comparing: arrays and trees under one tolerance policy, verdicts, failure reports, records.

    closeness.py        compare, compared (recorded even when the trees cannot be compared),
                        assert_close (assert_trees_close: its deprecated old name)
    verdict.py          ParityResult (one leaf), Comparison (a tree), problem_record
    failure.py          the failure message: every failing leaf, worst first
    tolerance.py        the default table and the layers of the policy
    case_tolerances.py  the running case's layers (marker, command line)
    trees.py            leaves by path, structure checked first
    masks.py            masks per leaf: one array, a tree of masks, or a function of the path
    records.py          where comparisons wait for the plugin's report
"""

from pytest_parity.compare.budget import GRADIENT_BUDGET, REFERENCE_DTYPES, element_tolerance
from pytest_parity.compare.closeness import assert_close, assert_trees_close, compare, compared
from pytest_parity.compare.failure import format_failure
from pytest_parity.compare.tolerance import (
    DEFAULT_TOLERANCES,
    Layer,
    Tolerance,
    default_tolerance,
    resolve_layers,
)
from pytest_parity.compare.trees import StructureMismatch, leaves
from pytest_parity.compare.verdict import (
    Comparison,
    Element,
    PaddingNote,
    ParityRecord,
    ParityResult,
    problem_record,
)

__all__ = [
    "DEFAULT_TOLERANCES",
    "GRADIENT_BUDGET",
    "REFERENCE_DTYPES",
    "Comparison",
    "Element",
    "Layer",
    "PaddingNote",
    "ParityRecord",
    "ParityResult",
    "StructureMismatch",
    "Tolerance",
    "assert_close",
    "assert_trees_close",
    "compare",
    "compared",
    "default_tolerance",
    "element_tolerance",
    "format_failure",
    "leaves",
    "problem_record",
    "resolve_layers",
]
