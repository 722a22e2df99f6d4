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


def declared_pairs(start: Path) -> tuple[Path | None, dict[str, tuple[str, str]]]:
    """The project's pair table, `[tool.parity.pairs]` (`name = "module"`), read without
    importing anything: each pair's name -> (the module that registers it, where it is said).

    Raises:
        ParityError: the pyproject.toml is unreadable, or the table is not names to modules.
    """
    root, table = parity_table(start)
    pairs = table.get("pairs", {})
    where = f"{root / 'pyproject.toml'} [tool.parity.pairs]" if root is not None else ""
    if not isinstance(pairs, dict):
        raise ParityError(f"{where} is a {type(pairs).__name__}; expected a table of "
                          'pair names to modules, e.g. resnet18 = "mypackage.pairs"')
    for name, module in pairs.items():
        if not isinstance(module, str) or not module:
            raise ParityError(f"{where}: {name} = {module!r}; expected the name of "
                              f'the module that registers it, e.g. {name} = "mypackage.pairs"')
    return root, {name: (module, where) for name, module in pairs.items()}
