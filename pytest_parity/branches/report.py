"""What a gradient or steps verdict says of the branches its non-smooth ops took."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_parity.branches.choices import Flip, flip_lines

# A side whose drift from its own reference run is this many times the other side's, in any
# leaf, may owe it to one element rounded across a kink (ResNet-18's gradients: 150x, where
# correct sides' drifts are within 3x of each other): its branches are looked at even where the
# comparison passed, for a budget drawn from that drift (torch's for gradients, both sides' for
# steps) would be wide enough to hide a bug. In float32 only: in bfloat16 a network's
# elements cross kinks by the thousand on both sides, and XLA's backward alone drifts 10x
# torch's (ViT-Ti's 3 AdamW steps: looked at, nothing flipped that mattered, 30 s more).
DRIFT_RATIO = 10.0


def drifts_apart(comparison: Any, dtype: str) -> bool:
    """Whether, in some leaf judged by its budget of a float32 case, one side drifted
    DRIFT_RATIO times as far from its reference run as the other."""
    if dtype != "float32":
        return False
    for leaf in comparison.leaves:
        budget = leaf.budget
        if budget is None:
            continue
        small, large = sorted((budget.torch.rms, budget.flax.rms))
        if large > DRIFT_RATIO * small:
            return True
    return False


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
            return [f"[parity] no ReLU, max, clamp or select took another branch in {dtype} "
                    f"than in {reference_dtype} in a re-run: each side's backward is taken "
                    f"through its {reference_dtype} branches{first}"]
        return [f"[parity] rounding put {len(self.flips)} element"
                f"{'' if len(self.flips) == 1 else 's'} of non-smooth ops on the other side "
                f"of a kink: each side's backward is taken through the branch its "
                f"{reference_dtype} run took{first}",
                *flip_lines(self.flips, dtype, reference_dtype)]

    @property
    def set_apart(self) -> bool:
        """Whether the verdict passed only through the reference's branches (its first run
        failed, or elements were flipped): a warning says so."""
        return self.checked and (bool(self.flips) or (
            self.unpinned is not None and not self.unpinned.passed))

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"checked": self.checked,
                                  "flips": [flip.to_record() for flip in self.flips]}
        if self.unpinned is not None:
            record["unpinned_margin"] = self.unpinned.margin
        if self.problem is not None:
            record["problem"] = self.problem
        return record
