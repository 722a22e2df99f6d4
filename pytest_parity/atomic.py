"""Atomic, no-clobber file writes: a temporary file beside the target, then a link or rename.

A write either puts the whole file in place or changes nothing: no half-written target, no
temporary file left behind. What stops it (a directory in the file's place, a file where a
directory should be, no permission, a name too long) is a WriteError naming the file.
`write_together` does the same for files that belong together (a golden .npz and its .json).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_parity.errors import CheckpointError, ParityError

_EXISTS = "the file exists; pass overwrite=True (CLI: --overwrite) to replace it"
_NAME_KEPT = 40  # characters of the target's name in a temporary's: 40 x 4 UTF-8 bytes fit

Writer = Callable[[Path], Any]


class WriteError(ParityError):
    """A file cannot be written; nothing was changed."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: cannot write it: {reason}")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _reason(path: Path, error: OSError) -> str:
    """What stopped a write, in words (the errno's text where there are no better ones)."""
    blocker = next((parent for parent in reversed(path.parents)
                    if os.path.lexists(parent) and not os.path.isdir(parent)), None)
    if error.errno in (errno.ENOTDIR, errno.EEXIST) and blocker is not None:
        return f"{blocker} is a file, not a directory"
    if error.errno == errno.EISDIR:
        return "a directory is in its place"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied in {path.parent}"
    if error.errno == errno.ENAMETOOLONG:
        return (f"its name is too long ({len(os.fsencode(path.name))} bytes; most file "
                "systems allow 255)")
    return error.strerror or str(error)


def _prepare(path: Path, overwrite: bool) -> None:
    try:
        if path.is_dir():
            raise WriteError(path, "a directory is in its place")
        if not overwrite and os.path.lexists(path):
            raise CheckpointError(path, [_EXISTS])
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(path, _reason(path, error)) from None


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):  # not worth failing a written file for
        path.unlink(missing_ok=True)


def _written_temporary(path: Path, write: Writer) -> Path:
    """`write` called on a new temporary file beside `path`; the temporary, complete."""
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:_NAME_KEPT]}.",
                                        suffix=".tmp")
    except OSError as error:
        raise WriteError(path, _reason(path, error)) from None
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; files are the user's
    except OSError as error:
        _remove(temporary)
        raise WriteError(path, _reason(path, error)) from None
    except BaseException:
        _remove(temporary)
        raise
    return temporary


def _move(temporary: Path, path: Path, overwrite: bool) -> None:
    """The temporary to `path` in one step; without `overwrite` a hard link, which fails
    atomically where a rename would clobber a file that appeared meanwhile."""
    try:
        if overwrite:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
    except FileExistsError:
        raise CheckpointError(path, [_EXISTS]) from None
    except OSError as error:
        raise WriteError(path, _reason(path, error)) from None


def _backup(path: Path) -> Path | None:
    """A second name for the file at `path` (a hard link, else a copy), to put it back."""
    if not path.is_file():
        return None
    backup = path.with_name(f".{path.name[:_NAME_KEPT]}.{secrets.token_hex(4)}.old")
    try:
        os.link(path, backup)
    except OSError:
        try:
            shutil.copy2(path, backup)
        except OSError as error:
            _remove(backup)
            raise WriteError(path, f"cannot keep the old file to restore: {_reason(path, error)}"
                             ) from None
    return backup


def _put_back(moved: list[tuple[Path, Path | None]]) -> list[str]:
    """Undo the moves already made (newest first); what could not be undone, in words."""
    lost = []
    for path, backup in reversed(moved):
        try:
            if backup is None:
                path.unlink()
            else:
                os.replace(backup, path)
        except OSError as error:
            lost.append(f"{path} not restored ({error.strerror}); "
                        + (f"the old file is {backup}" if backup else "it is the new one"))
    return lost


def _move_all(temporaries: list[Path], paths: list[Path], overwrite: bool) -> None:
    moved: list[tuple[Path, Path | None]] = []
    try:
        for temporary, path in zip(temporaries, paths, strict=True):
            backup = _backup(path) if overwrite and len(paths) > 1 else None
            try:
                _move(temporary, path, overwrite)
            except BaseException:
                if backup is not None:
                    _remove(backup)
                raise
            moved.append((path, backup))
    except WriteError as error:
        lost = _put_back(moved)
        if lost:
            raise WriteError(error.path, "; ".join([error.reason, *lost])) from None
        raise
    except BaseException:
        _put_back(moved)
        raise
    for _, backup in moved:
        if backup is not None:
            _remove(backup)


def write_together(files: Sequence[tuple[str | Path, Writer]], *,
                   overwrite: bool = False) -> list[Path]:
    """Write several files as a whole or not at all: each `write(temporary)` first, then every
    temporary moved into place; where a move fails, the files already moved are put back.

    Raises:
        CheckpointError: a file exists and overwrite is False.
        WriteError: a file cannot be written (nothing was changed).
    """
    paths = [Path(path) for path, _ in files]
    temporaries: list[Path] = []
    try:
        for path, (_, write) in zip(paths, files, strict=True):
            _prepare(path, overwrite)
            temporaries.append(_written_temporary(path, write))
        _move_all(temporaries, paths, overwrite)
    finally:
        for temporary in temporaries:
            _remove(temporary)
    return paths


def write_atomically(path: str | Path, write: Writer, *, overwrite: bool = False) -> Path:
    """Call `write(temporary_path)`, then move the result to `path` in one step.

    Without `overwrite`, an existing file is never replaced, even one that appears while
    writing (a hard link fails atomically where a rename would clobber).

    Raises:
        CheckpointError: the file exists and overwrite is False.
        WriteError: the file cannot be written (nothing was changed).
    """
    return write_together([(path, write)], overwrite=overwrite)[0]
