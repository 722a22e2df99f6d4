"""What a non-smooth op chose, element by element, and where two runs of one side chose apart.

A ReLU, a max, a clamp or a select passes each output element on from one of its operands
(`x` or the constant 0; `a` or `b`; `lo`, `x` or `hi`; one case of a select); its gradient
flows to that operand alone. Which one is the op's *choice*, recorded per element as a small
integer (the operand's position). Where an element's operands are within rounding of each
other (a ReLU input within 1e-7 of 0), two computations of the same value can choose apart:
the forward hardly moves, the backward moves by that element's whole gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SHOWN = 5  # the elements a report lists per side


@dataclass(frozen=True)
class Choice:
    """One op's choices in one run: where the op ran (the module path its framework knows),
    what it is, the operand each element took, and how far each element's operands were
    apart (the ReLU input; a - b for a max; None where the op does not say)."""

    where: str
    op: str
    chosen: np.ndarray
    apart: np.ndarray | None


@dataclass(frozen=True)
class Flip:
    """One element whose choice differs between a side's run in the case's dtype and its
    run in the reference dtype: rounding put it on the other side of the kink."""

    side: str  # "torch" or "Flax"
    where: str
    op: str
    index: tuple[int, ...]
    # how far apart the operands were, in the case's dtype (nan: not known; a max pool's: how
    # far its window's winner led the reference's winner)
    value: float
    reference_value: float  # the same in the reference dtype (a max pool's: nan)
    step: int | None = None  # the training step, for steps checks
    order: int = 0  # the op's place among the run's non-smooth ops (a module may call two)

    def to_record(self) -> dict[str, object]:
        return {"side": self.side, "where": self.where, "op": self.op,
                "index": list(self.index), "value": self.value,
                "reference_value": self.reference_value, "step": self.step}

    def line(self, dtype: str, reference_dtype: str) -> str:
        step = "" if self.step is None else f"step {self.step + 1}, "
        if np.isnan(self.value):
            values = ""
        elif np.isnan(self.reference_value):  # a max pool: how far its winner led
            values = f": {dtype}'s winner {self.value:.3e} above {reference_dtype}'s"
        else:
            values = f": {dtype} {self.value:+.3e}, {reference_dtype} {self.reference_value:+.3e}"
        return f"    {step}{self.op} in {self.where or '(root)'} at {self.index}{values}"


def _value(apart: np.ndarray | None, index: tuple[int, ...]) -> float:
    if apart is None:
        return float("nan")
    return float(np.broadcast_to(apart, apart.shape)[index]) if apart.ndim else float(apart)


def flips_between(own: Sequence[Choice], reference: Sequence[Choice], side: str,
                  step: int | None = None) -> list[Flip]:
    """Every element whose choice differs between `own` (the case's dtype) and `reference`
    (the same ops in the reference dtype), op by op in the order they ran."""
    found = []
    for order, (mine, theirs) in enumerate(zip(own, reference, strict=True)):
        apart = np.argwhere(np.asarray(mine.chosen) != np.asarray(theirs.chosen))
        for index in map(tuple, apart.tolist()):
            found.append(Flip(side, mine.where, mine.op, index, _value(mine.apart, index),
                              _value(theirs.apart, index), step, order))
    return found


def check_aligned(own: Sequence[Choice], reference: Sequence[Choice], side: str) -> str | None:
    """Why two runs' choices cannot be paired op by op (None: they can)."""
    if len(own) != len(reference):
        return (f"{side} ran {len(own)} non-smooth ops in the case's dtype and "
                f"{len(reference)} in the reference dtype")
    for number, (mine, theirs) in enumerate(zip(own, reference, strict=True)):
        if np.shape(mine.chosen) != np.shape(theirs.chosen):
            return (f"{side}'s non-smooth op {number} ({mine.op} in {mine.where}) has shape "
                    f"{np.shape(mine.chosen)} in the case's dtype and "
                    f"{np.shape(theirs.chosen)} in the reference dtype")
    return None


def flip_lines(flips: Sequence[Flip], dtype: str, reference_dtype: str,
               shown: int = SHOWN) -> list[str]:
    """The report's lines: how many elements each side flipped, and the first few."""
    lines = []
    for side in ("torch", "Flax"):
        mine = [flip for flip in flips if flip.side == side]
        if not mine:
            continue
        lines.append(f"  {side}: {len(mine)} element{'' if len(mine) == 1 else 's'} on the "
                     f"other side of a kink in {dtype} than in {reference_dtype}:")
        lines.extend(flip.line(dtype, reference_dtype) for flip in mine[:shown])
        if len(mine) > shown:
            lines.append(f"    ... {len(mine) - shown} more (all in the JSON report)")
    return lines
