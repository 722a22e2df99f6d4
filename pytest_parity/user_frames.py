"""Where in a user's own code an error arose, for the `[parity]` messages that wrap it.

An error from tracing a user's Flax module surfaces through many frames of jax and flax; the
line a user must change is the innermost frame outside them (and outside Python's own library
and pytest-parity), e.g. `models/port.py:42 in __call__: x = nn.Dense(...)(x, mask)`.
"""

from __future__ import annotations

import linecache
import os
import sys
import sysconfig
import traceback
from pathlib import Path

# Packages whose frames are machinery between the plugin and the user's module.
_LIBRARIES = ("jax", "jaxlib", "flax", "numpy", "optax", "orbax", "pytest_parity")


def _library_roots() -> tuple[str, ...]:
    roots = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
    for name in _LIBRARIES:
        file = getattr(sys.modules.get(name), "__file__", None)
        if file:
            roots.add(str(Path(file).parent))
    return tuple(os.path.join(os.path.realpath(root), "") for root in roots)


def user_frame(error: BaseException) -> str | None:
    """The innermost frame of `error`'s traceback in the user's code, as 'file:line in
    function: source line' (the file relative to the working directory where under it), or
    None where every frame is a library's."""
    roots = _library_roots()
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        filename = os.path.realpath(frame.filename)
        if frame.filename.startswith("<") or filename.startswith(roots):
            continue
        try:
            shown = os.path.relpath(filename)
        except ValueError:  # another drive (Windows)
            shown = filename
        shown = filename if shown.startswith("..") else shown
        source = (frame.line or linecache.getline(filename, frame.lineno or 0)).strip()
        return f"{shown}:{frame.lineno} in {frame.name}" + (f": {source}" if source else "")
    return None
