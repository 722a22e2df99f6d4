"""The plugin's own error types: each names the file and the keys at fault."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

PREFIX = "[parity]"  # every message of the plugin starts with it


class Prefixed:
    """An exception whose message starts with PREFIX, once: raised without it, it is added
    (a message that already has it keeps the one)."""

    @property
    def message(self) -> str:
        """The message without the prefix."""
        text = Exception.__str__(self)  # type: ignore[arg-type]
        return text.removeprefix(PREFIX).lstrip(" ") if text.startswith(PREFIX) else text

    def __str__(self) -> str:
        return f"{PREFIX} {self.message}"


class ParityError(Prefixed, Exception):
    """Base of every error pytest-parity raises on bad input."""


class ParityDeprecationWarning(DeprecationWarning):
    """A public name or setting that still works for one release, then goes; the message
    names its replacement."""


def deprecated(old: str, new: str) -> str:
    """The message of a ParityDeprecationWarning: `old` works for now, `new` is its name."""
    return f"{PREFIX} {old} is deprecated and will be removed in the next release; use {new}"


class CheckpointError(ParityError):
    """A checkpoint file cannot be read, or its contents are not what was expected.

    Every problem found is listed, not only the first.
    """

    def __init__(self, path: str | Path, problems: Sequence[str]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        count = f"{len(self.problems)} problems" if len(self.problems) > 1 else "1 problem"
        lines = [f"{self.path}: {count}"] + [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))
