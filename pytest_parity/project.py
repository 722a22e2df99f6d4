"""The project's own `[tool.parity]` table in its pyproject.toml (zoo modules, benchmark gates)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pytest_parity.errors import ParityError


def parity_table(start: Path) -> tuple[Path | None, dict[str, Any]]:
    """The directory of the nearest pyproject.toml at or above `start`, and its [tool.parity].

    Raises:
        ParityError: the pyproject.toml is not readable TOML, or [tool.parity] is no table.
    """
    for directory in (start, *start.parents):
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            try:
                with pyproject.open("rb") as handle:
                    table = tomllib.load(handle).get("tool", {}).get("parity", {})
            except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, AttributeError
                    ) as error:
                raise ParityError(f"{pyproject}: not readable as TOML with a "
                                  f"[tool] table ({type(error).__name__}: {error})") from None
            if not isinstance(table, dict):
                raise ParityError(f"{pyproject}: [tool.parity] is a "
                                  f"{type(table).__name__}, not a table")
            return directory, table
    return None, {}
