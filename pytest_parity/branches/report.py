"""What a gradient or steps verdict says of the branches its non-smooth ops took."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_parity.branches.choices import Flip, flip_lines

# Where torch's drift from its own reference run is this many times the Flax side's, in any
# leaf of a gradient check, it may owe it to one element rounded across a kink (ResNet-18's
# gradients: 150x, where correct sides' drifts are within 3x of each other), and a budget
# drawn from it would be wide enough to hide a bug: a check that passed has its branches looked
# at then. The Flax side's own flips fail the check, and are looked at as failures.
DRIFT_RATIO = 10.0
# A steps check is held to both sides' drifts, so either side's flip widens its budget (a
# 3-element toy: a port whose output is twice torch's passed). Adam turns rounding noise into
# steps of up to the learning rate on either side: correct zoo ports reach 11x in a bias leaf
# after 3 AdamW steps (ResNet-18's fc.bias 11.4, ViT-Ti/16's head bias 10.1), flips there too.
STEPS_DRIFT_RATIO = 100.0


def _apart(comparison: Any, ratio: float, torch_only: bool) -> bool:
    for leaf in comparison.leaves:
        if leaf.budget is None:
            continue
        torch, flax = leaf.budget.torch.rms, leaf.budget.flax.rms
        if min(torch, flax) == 0.0:  # a side that computed the leaf exactly: no ratio
            continue
        if torch > ratio * flax or (not torch_only and flax > ratio * torch):
            return True
    return False


def drifted_apart(comparison: Any, dtype: str, kind: str) -> bool:
    """Whether a float32 case's comparison that passed may owe it to a flip: in a gradient
    check torch drifted DRIFT_RATIO times as far from its reference as the Flax side, in a
    steps check either side STEPS_DRIFT_RATIO times the other. In float32 only: in bfloat16
    elements cross kinks by the thousand on both sides."""
    if dtype != "float32":
        return False
    if kind == "steps":
        return _apart(comparison, STEPS_DRIFT_RATIO, torch_only=False)
    return _apart(comparison, DRIFT_RATIO, torch_only=True)


class ParityBranchWarning(UserWarning):
    """A check passed once each side's backward was taken through its reference-precision
    branches: rounding had put elements on the other side of a kink (listed)."""


@dataclass(frozen=True)
class Branches:
    """A failing check judged again through the reference's branches: the elements rounding
    flipped (`flips`), the verdict before (`unpinned`, where any flipped), whether the
    branches were compared at all (`checked`), or why not (`problem`)."""

    flips: list[Flip] = field(default_factory=list)
    checked: bool = False
    unpinned: Any = None  # the Comparison without pinning
    problem: str | None = None

    def lines(self, dtype: str, reference_dtype: str, passed: bool = False) -> list[str]:
        """The report's lines (none where the branches were never looked at); `passed`: the
        verdict through the reference's branches (a pass says what the first run gave)."""
        if self.problem is not None:
            return [f"[parity] branches of non-smooth ops not compared: {self.problem}"]
        if not self.checked:
            return []
        before = self.unpinned
        first = ("" if before is None or not (passed or self.flips) else
                 f" (before that: margin {before.margin:.3g}, "
                 f"{len(before.failing)} of {len(before.leaves)} leaves failing)")
        if not self.flips:
            return [f"[parity] no ReLU, max, clamp, select or max pool took another branch in "
                    f"{dtype} than in {reference_dtype}: rounding at a kink does not explain "
                    "this"]
        return [f"[parity] rounding put {len(self.flips)} element"
                f"{'' if len(self.flips) == 1 else 's'} of non-smooth ops on the other side "
                f"of a kink: each side's backward is taken through the branch its "
                f"{reference_dtype} run took{first}",
                *flip_lines(self.flips, dtype, reference_dtype)]

    @property
    def set_apart(self) -> bool:
        """Whether the verdict was drawn through the reference's branches (elements were
        flipped): a warning says so where it passes."""
        return bool(self.flips)

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"checked": self.checked,
                                  "flips": [flip.to_record() for flip in self.flips]}
        if self.unpinned is not None:
            record["unpinned_margin"] = self.unpinned.margin
        if self.problem is not None:
            record["problem"] = self.problem
        return record
