"""Optional requirements of a test module: skipped where absent locally, a failure under CI.

The noxfile's sessions that collect such a module install what it needs (the MiniLM wheel and
the `text` extra), so under CI an absent requirement is a broken setup, and a skip would hide
that the module's tests never ran.
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def require(module: str, missing: str) -> None:
    """Skip the calling test module where `module` cannot be imported, or, where the `CI`
    environment variable is set (non-empty), fail its collection with `missing` (what is
    absent and how to install it)."""
    if importlib.util.find_spec(module) is not None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"[parity] {missing}; under CI (CI={os.environ['CI']!r}) these tests must "
                    "run, not skip: the noxfile's sessions install it", pytrace=False)
    pytest.skip(missing, allow_module_level=True)
