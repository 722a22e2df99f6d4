"""An exclusive lock on one golden file across processes (xdist workers), or a GoldenError.

The lock is `flock` on `.NAME.lock` in the golden directory. The kernel releases it when its
holder exits, so a lock file left by a killed run is harmless and reused; a lock held past
LOCK_SECONDS (a hung or stopped run) is an error naming the file rather than a hang.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pytest_parity.golden.stored import GoldenError

LOCK_SECONDS = 300.0  # a golden write takes well under a second; xdist workers queue briefly
_POLL_SECONDS = 0.05


def lock_path(directory: Path, name: str) -> Path:
    return directory / f".{name}.lock"


def _golden_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        blocker = next((parent for parent in (directory, *directory.parents)
                        if os.path.lexists(parent) and not os.path.isdir(parent)), None)
        reason = (f"{blocker} is a file, not a directory" if blocker is not None
                  else f"cannot make the golden directory ({error.strerror})")
        raise GoldenError(f"{directory}: {reason}") from None


def _open(path: Path) -> int:
    if os.path.isdir(path):
        raise GoldenError(f"{path}: a directory in the place of the golden file's lock "
                          "file; remove it")
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError as error:
        if not os.path.exists(path):
            raise GoldenError(f"{path}: cannot make the golden file's lock file "
                              f"({error.strerror})") from None
        # a lock file another user left: reading it is enough to lock it
    except OSError as error:
        raise GoldenError(f"{path}: cannot open the golden file's lock file "
                          f"({error.strerror})") from None
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as error:
        raise GoldenError(f"{path}: cannot open the golden file's lock file "
                          f"({error.strerror}); remove it") from None


def _acquire(handle: int, path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise GoldenError(f"{path}: another process has held the golden "
                                  f"file's lock for {seconds:g}s (a hung or stopped test run?); "
                                  "end it and rerun") from None
            time.sleep(_POLL_SECONDS)
        except OSError as error:
            raise GoldenError(f"{path}: cannot lock the golden file "
                              f"({error.strerror})") from None


@contextmanager
def locked(directory: Path, name: str, *, seconds: float = LOCK_SECONDS) -> Iterator[None]:
    """An exclusive lock on the golden file `name` (made with its directory if missing).

    Raises:
        GoldenError: the directory or the lock file cannot be made or opened, or another
            process holds the lock for `seconds`.
    """
    _golden_directory(directory)
    path = lock_path(directory, name)
    handle = _open(path)
    try:
        _acquire(handle, path, seconds)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        os.close(handle)
