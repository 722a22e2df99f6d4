"""What an audit finds: one weight or one setting that differs between the two sides."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One difference an audit found, with both sides' values as text.

    `audit` is "weights" or "settings"; `where` names the place (a canonical path for weights;
    `torch NAME <-> flax PATH` for settings); `what` the key or setting; `note` the figures
    (max abs, dtype, transform) or a hint at what the value equals instead.
    """

    audit: str
    where: str
    what: str
    torch: str
    flax: str
    note: str = ""

    def line(self) -> str:
        note = f" ({self.note})" if self.note else ""
        return f"{self.where}: {self.what}: torch {self.torch}, flax {self.flax}{note}"

    def to_record(self) -> dict[str, str]:
        return {"audit": self.audit, "where": self.where, "what": self.what,
                "torch": self.torch, "flax": self.flax, "note": self.note}
