"""What an audit finds: one weight or one setting that differs between the two sides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# What a difference changes: the forward pass's outputs, or only what training does (a
# gradient, a running statistic's update, a dropout mask in a run that draws none). A forward
# check is explained by the first kind alone; gradient and step checks by both.
Affects = Literal["forward", "training"]


@dataclass(frozen=True)
class Finding:
    """One difference an audit found, with both sides' values as text.

    `audit` is "weights" or "settings"; `where` names the place (a canonical path for weights;
    `torch NAME <-> flax PATH` for settings); `what` the key or setting; `note` the figures
    (max abs, dtype, transform) or a hint at what the value equals instead; `affects` what the
    difference changes.
    """

    audit: str
    where: str
    what: str
    torch: str
    flax: str
    note: str = ""
    affects: Affects = "forward"

    def line(self) -> str:
        note = f" ({self.note})" if self.note else ""
        what = self.what if self.affects == "forward" else f"{self.what} ({self.affects} only)"
        return f"{self.where}: {what}: torch {self.torch}, flax {self.flax}{note}"

    def to_record(self) -> dict[str, str]:
        return {"audit": self.audit, "where": self.where, "what": self.what,
                "torch": self.torch, "flax": self.flax, "note": self.note,
                "affects": self.affects}
