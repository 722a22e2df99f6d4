"""The plugin's caches on disk: where each lives, what it holds, its size, and clearing one.

The fixtures, the jax cache option and `parity golden` take their directories from here, so
`parity cache` lists and clears exactly what they write. Imports no framework.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pytest_parity.errors import ParityError

# Directories in pytest's cache (`config.cache.mkdir(...)`: ROOT/.pytest_cache/d/NAME).
CHECKPOINTS_DIR = "parity-checkpoints"
XLA_DIR = "parity-xla"
# Files that make a directory pytest's rootdir when pytest is run in it or below it.
PROJECT_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


def tmp_checkpoints_dir() -> Path:
    """Checkpoints of runs without pytest's cache (-p no:cacheprovider) and of `parity trace`."""
    return Path(tempfile.gettempdir()) / "pytest-parity-checkpoints"


def user_cache_dir() -> Path:
    """$PYTEST_PARITY_CACHE, else the user cache dir (~/.cache/pytest-parity)."""
    configured = os.environ.get("PYTEST_PARITY_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pytest-parity"


def project_root(start: Path) -> Path:
    """The nearest directory at or above `start` holding a pytest config file, else `start`.

    Simpler than pytest's own search (which also reads the files' sections), and enough to
    find the `.pytest_cache` of a project one works in.
    """
    for directory in (start, *start.parents):
        if any((directory / name).is_file() for name in PROJECT_FILES):
            return directory
    return start


@dataclass(frozen=True)
class Cache:
    name: str  # what `parity cache --clear NAME` takes
    path: Path
    holds: str


def plugin_caches(root: Path) -> list[Cache]:
    """Every cache the plugin writes for the project at `root`, and the user-wide ones."""
    pytest_cache = root / ".pytest_cache" / "d"
    return [
        Cache("checkpoints", pytest_cache / CHECKPOINTS_DIR,
              "seeded and converted checkpoints, Flax shape records"),
        Cache("xla", pytest_cache / XLA_DIR,
              "jax's persistent compilation cache (--parity-jax-cache's default)"),
        Cache("tmp-checkpoints", tmp_checkpoints_dir(),
              "checkpoints of runs without pytest's cache and of `parity trace`"),
        Cache("golden", user_cache_dir(), "checkpoints `parity golden` computes from"),
    ]


def select(caches: list[Cache], name: str | None) -> list[Cache]:
    """All `caches` (name None), else the one named.

    Raises:
        ParityError: no cache has that name; names the known ones.
    """
    chosen = [cache for cache in caches if name in (None, cache.name)]
    if not chosen:
        known = ", ".join(cache.name for cache in caches)
        raise ParityError(f"no cache named {name!r}; the caches are: {known}")
    return chosen


@dataclass(frozen=True)
class Usage:
    bytes: int
    files: int

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.bytes + other.bytes, self.files + other.files)


def _files(path: Path) -> Iterator[Path]:
    """Every file under `path` (links counted as files, never followed)."""
    for directory, _, names in os.walk(path):
        for name in names:
            yield Path(directory) / name


def usage(path: Path) -> Usage | None:
    """Apparent size and file count of what removing `path` frees; None when it is absent."""
    if path.is_symlink():
        return Usage(0, 0)  # clearing removes the link, never its target
    if path.is_file():
        return Usage(path.stat().st_size, 1)
    if not path.is_dir():
        return None
    sizes = [file.lstat().st_size for file in _files(path)]
    return Usage(sum(sizes), len(sizes))


def human_size(count: int) -> str:
    """Decimal units as du --si writes them: 980 B, 1.5 kB, 103 MB, 2.6 GB."""
    if count < 1000:
        return f"{count} B"
    value = float(count)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if round(value) < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}" if value < 9.95 else f"{value:.0f} {unit}"


def size_phrase(found: Usage | None) -> str:
    if found is None:
        return "absent"
    files = "1 file" if found.files == 1 else f"{found.files} files"
    return f"{human_size(found.bytes)} in {files}"


def listing(root: Path) -> list[str]:
    """The lines of `parity cache`: each cache, what it holds and its size, and the total."""
    lines = [f"pytest-parity's caches for {root}:"]
    total = Usage(0, 0)
    for cache in plugin_caches(root):
        found = usage(cache.path)
        if cache.path.is_symlink():
            lines += [f"{cache.name}  {cache.path} -> {os.readlink(cache.path)}",
                      f"  {cache.holds}: a link; --clear removes the link, not its target"]
            continue
        lines += [f"{cache.name}  {cache.path}", f"  {cache.holds}: {size_phrase(found)}"]
        if found is not None:
            total += found
    lines.append(f"total: {size_phrase(total)}")
    return lines + _others(root)


def _others(root: Path) -> list[str]:
    """Lines for what else is big beside the caches and not theirs to clear."""
    lines = []
    pytest_cache = usage(root / ".pytest_cache")
    if pytest_cache is not None:
        ours = [usage(root / ".pytest_cache" / "d" / name) for name in (CHECKPOINTS_DIR, XLA_DIR)]
        rest = pytest_cache.bytes - sum(found.bytes for found in ours if found is not None)
        lines.append(f"`.pytest_cache` besides these (pytest's own and others', not cleared "
                     f"here): {human_size(rest)}")
    nox = usage(root / ".nox")
    if nox is not None:
        lines.append(f"`.nox` (nox's environments, not cleared here): {human_size(nox.bytes)}")
    return lines


def _refuse_broad(path: Path, root: Path) -> None:
    """A cache path set to a directory that holds more than the cache is never removed."""
    resolved = path.resolve()
    home, project = Path.home().resolve(), root.resolve()
    broad = {home, *home.parents, project, *project.parents,
             Path(tempfile.gettempdir()).resolve()}
    if resolved in broad:
        raise ParityError(f"{path}: refused to clear, it is {resolved}, which holds "
                          "more than the plugin's cache; set PYTEST_PARITY_CACHE to a "
                          "directory of its own")


def clear(cache: Cache, root: Path) -> tuple[str, Usage]:
    """Remove one cache's directory (a link: the link only); a line saying what was freed."""
    path = cache.path
    if path.is_symlink():
        target = os.readlink(path)
        path.unlink()
        line = f"{cache.name}: removed the link {path} (its target {target} is left alone)"
        return line, Usage(0, 0)
    if not path.exists():
        return f"{cache.name}: nothing to clear, {path} is absent", Usage(0, 0)
    _refuse_broad(path, root)
    found = usage(path) or Usage(0, 0)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    return f"{cache.name}: freed {size_phrase(found)} ({path})", found


def clear_all(caches: list[Cache], root: Path) -> list[str]:
    """Clear each of `caches`; the lines saying what each freed, and the total."""
    lines, total = [], Usage(0, 0)
    for cache in caches:
        line, freed = clear(cache, root)
        lines.append(line)
        total += freed
    if len(caches) > 1:
        lines.append(f"freed {size_phrase(total)} in all")
    return lines
