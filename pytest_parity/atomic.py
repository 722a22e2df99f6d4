"""Atomic, no-clobber file writes: a temporary file beside the target, then a link or rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_parity.errors import CheckpointError

_EXISTS = "the file exists; pass overwrite=True (CLI: --overwrite) to replace it"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_atomically(path: str | Path, write: Callable[[Path], Any], *,
                     overwrite: bool = False) -> Path:
    """Call `write(temporary_path)`, then move the result to `path` in one step.

    Without `overwrite`, an existing file is never replaced, even one that appears while
    writing (a hard link fails atomically where a rename would clobber).

    Raises:
        CheckpointError: the file exists and overwrite is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise CheckpointError(path, [_EXISTS])
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; files are the user's
        if overwrite:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
    except FileExistsError:
        raise CheckpointError(path, [_EXISTS]) from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path
