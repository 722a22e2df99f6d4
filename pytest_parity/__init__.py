"""pytest-parity: numerical parity tests between PyTorch models and their JAX/Flax ports.

The public names are listed once, in `__init__.pyi` (what type checkers read); this module
reads that list and imports each name on its first use, so that loading the pytest plugin
(which imports this package) stays light: no numpy, torch or jax until a test needs them.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

__version__ = "0.1.0"


def _public_names() -> dict[str, str]:
    """Each public name's module, from the stub's `from module import name as name` lines."""
    stub = ast.parse(Path(__file__).with_suffix(".pyi").read_text(encoding="utf-8"))
    return {alias.name: node.module for node in stub.body
            if isinstance(node, ast.ImportFrom) and node.module
            for alias in node.names if alias.asname == alias.name}


_MODULE_OF = _public_names()
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'pytest_parity' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
