"""The project's own `[tool.parity]` table in its pyproject.toml (zoo modules, benchmark gates)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


def parity_table(start: Path) -> tuple[Path | None, dict[str, Any]]:
    """The directory of the nearest pyproject.toml at or above `start`, and its [tool.parity]."""
    for directory in (start, *start.parents):
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            with pyproject.open("rb") as handle:
                return directory, tomllib.load(handle).get("tool", {}).get("parity", {})
    return None, {}
