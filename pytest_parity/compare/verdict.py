"""Verdicts: how one leaf and one whole tree compared, with the figures the reports show."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_parity.compare.budget import Budget
from pytest_parity.parity_record import ParityRecord as ParityRecord  # the compare face's


@dataclass(frozen=True)
class Element:
    """One element of a leaf, as the failure report's table shows it."""

    index: tuple[int, ...]
    actual: float
    expected: float
    abs_err: float
    allowed: float


@dataclass(frozen=True)
class PaddingNote:
    """Where a leaf compared in full fails in padding (`padding=`): the failure report's hint."""

    position: tuple[int, ...]  # the worst element's position, where the padding mask is 0
    n_failing_in_padding: int
    # The worst margin over the elements outside padding: <= 1, the leaf passes without it.
    margin_outside: float


@dataclass(frozen=True)
class ParityResult:
    """The verdict on one leaf: the errors, the tolerance, and the margin between them."""

    path: str
    shape: tuple[int, ...]
    actual_dtype: str
    expected_dtype: str
    max_abs: float
    # |actual - expected| / |expected| over the elements whose expected value is not 0 (one
    # expected 0 has no relative error and is judged by atol alone); 0 where none differs.
    max_rel: float
    # The element of the largest margin (the failure table's first row); the largest abs and
    # rel errors may sit elsewhere, so each figure carries its own index.
    worst_index: tuple[int, ...]
    rtol: float
    atol: float
    tolerance_from: str
    n_failing: int  # of the valid elements (those the mask keeps)
    size: int  # every element of the leaf, masked ones included
    n_masked: int  # elements masked out
    # Worst |actual - expected| / (atol + rtol * |expected|): <= 1 passes.
    margin: float
    worst: tuple[Element, ...]
    max_abs_index: tuple[int, ...] = ()
    max_rel_index: tuple[int, ...] = ()
    # Masked positions (pytest_parity.compare.masks): indices over the leading axes the mask
    # spans, of `position_shape` (() where nothing is masked).
    n_masked_positions: int = 0
    position_shape: tuple[int, ...] = ()
    padding: PaddingNote | None = None
    # Both sides' drift from their reference precision, where the case drew a budget
    # (pytest_parity.compare.budget); it judges the leaf where tolerance_from is "budget".
    budget: Budget | None = None

    @property
    def rms_over_budget(self) -> bool:
        """Judged by its budget, the cross error's rms exceeds what torch's drift allows."""
        return (self.budget is not None and self.tolerance_from == "budget"
                and self.budget.rms_margin > 1.0)

    @property
    def passed(self) -> bool:
        return self.n_failing == 0 and not self.rms_over_budget

    @property
    def n_valid(self) -> int:
        """The elements compared: those the mask keeps."""
        return self.size - self.n_masked


@dataclass(frozen=True)
class Comparison:
    """The verdict on a whole tree (or one array: one leaf with path '')."""

    name: str
    leaves: tuple[ParityResult, ...]

    @property
    def failing(self) -> list[ParityResult]:
        """The failing leaves, worst margin first."""
        return sorted((leaf for leaf in self.leaves if not leaf.passed), key=lambda r: -r.margin)

    @property
    def worst_leaf(self) -> ParityResult:
        return max(self.leaves, key=lambda leaf: leaf.margin)

    @property
    def passed(self) -> bool:
        return all(leaf.passed for leaf in self.leaves)

    @property
    def margin(self) -> float:
        return self.worst_leaf.margin

    @property
    def max_abs(self) -> float:
        return max(leaf.max_abs for leaf in self.leaves)

    @property
    def max_rel(self) -> float:
        return max(leaf.max_rel for leaf in self.leaves)

    @property
    def n_failing(self) -> int:
        return sum(leaf.n_failing for leaf in self.leaves)

    def to_record(self) -> ParityRecord:
        """The report's record: the worst leaf's figures, with counts over every leaf."""
        worst = self.worst_leaf
        return ParityRecord.from_dict({
            "name": self.name, "leaves": len(self.leaves),
            "failing_leaves": [leaf.path for leaf in self.failing],
            "worst_leaf": worst.path, "shape": list(worst.shape),
            "actual_dtype": worst.actual_dtype, "expected_dtype": worst.expected_dtype,
            "max_abs": self.max_abs, "max_rel": self.max_rel,
            "worst_index": list(worst.worst_index),
            "max_abs_index": list(max(self.leaves, key=lambda r: r.max_abs).max_abs_index),
            "rtol": worst.rtol, "atol": worst.atol,
            "tolerance_from": worst.tolerance_from, "n_failing": self.n_failing,
            "size": sum(leaf.size for leaf in self.leaves),
            "n_masked": sum(leaf.n_masked for leaf in self.leaves),
            "n_valid": sum(leaf.n_valid for leaf in self.leaves),
            "n_masked_positions": sum(leaf.n_masked_positions for leaf in self.leaves),
            "margin": self.margin, "passed": self.passed,
            "budget": worst.budget.to_record() if worst.budget else None,
        })


def problem_record(name: str, problem: str) -> ParityRecord:
    """The record of a comparison that never reached the values (structures, shapes or dtypes
    differ; the models could not be paired): a failure whose figures are unbounded."""
    return ParityRecord(name=name, extra={"problem": problem})
