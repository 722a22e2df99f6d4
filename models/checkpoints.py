"""Seeded zoo checkpoints, cached on disk and verified by digest before use.

What holds a seed's cache path decides what happens: this seed's checkpoint is served; what
holds nothing of value is replaced (a damaged file; a symbolic link that leads to no file: a
loop, a missing target, a directory; the link alone is removed, never what it names); what may
be of value is refused, untouched (a directory, another checkpoint), as a CacheBlocked naming
the path and saying to move it away.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from models.seeded import GENERATOR_VERSION, first_drawn, seeded_state_dict
from pytest_parity import progress
from pytest_parity.atomic import WriteError
from pytest_parity.caches import user_cache_dir as default_cache_dir
from pytest_parity.checkpoint import Checkpoint, checkpoint_from_torch, load, save
from pytest_parity.errors import CheckpointError
from pytest_parity.registry import Pair

_MOVE_AWAY = "move it away (or rename it) and the checkpoint is regenerated there"


class CacheBlocked(CheckpointError):
    """A seed's cache path holds something that is neither served nor removed (the fixtures
    report it as a failure without a traceback, as every ParityError)."""


def _not_the_seeds(checkpoint: Checkpoint, pair: Pair, seed: int) -> str | None:
    """Why a valid checkpoint at a seed's cache path is not that seed's, if it is not: its
    digest only vouches that the file is intact, not that it is the checkpoint asked for."""
    source = f"seeded:{seed}:v{GENERATOR_VERSION}"
    if checkpoint.source != source:
        return f"its source is {checkpoint.source!r}, not {source!r}"
    expected, _ = pair.mapping.torch_to_canonical(first_drawn(pair, seed))
    for path, array in expected.items():
        if path not in checkpoint.arrays or not np.array_equal(checkpoint.arrays[path], array):
            return f"{path} is not seed {seed}'s draw"
    return None


def _kind(path: Path) -> str:
    return "a directory" if path.is_dir() else "something that is not a regular file"


def _remove(path: Path, what: str) -> None:
    """Remove a file or a link (never its target) that holds nothing worth keeping."""
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        raise CacheBlocked(path, [f"{what}, which cannot be removed to regenerate the "
                                  f"checkpoint ({error.strerror}): {_MOVE_AWAY}"]) from None


def _broken_link_target(path: Path) -> str | None:
    """Where `path` points, if it is a symbolic link that leads to no regular file."""
    if not path.is_symlink() or path.is_file():  # is_file() follows links; False on a loop
        return None
    try:
        return os.readlink(path)
    except OSError:  # no longer a link: another worker replaced it meanwhile
        return None


def _cached(path: Path, architecture: str) -> Checkpoint | None:
    """The checkpoint the cache path holds, or None once nothing is in the way.

    A symbolic link that leads to no regular file (a loop, a missing target, a directory) is
    removed: the link alone, so nothing it names is touched. A file that does not load as a
    checkpoint (truncated, edited; through a link: the link) is removed, not trusted.

    Raises:
        CacheBlocked: a directory or another non-file in the path's place: never removed, it
            may hold someone's files.
    """
    target = _broken_link_target(path)
    if target is not None:
        _remove(path, f"a symbolic link to {target}, which leads to no file")
        progress.announce(f"[parity] {path}: a symbolic link to {target}, which leads to no "
                          "file; replaced by the generated checkpoint (its target is untouched)")
        return None
    if not os.path.lexists(path):
        return None
    if not path.is_file():
        raise CacheBlocked(path, [f"{_kind(path)} is in the place of the cached checkpoint; "
                                  f"it is not removed (it may hold your files): {_MOVE_AWAY}"])
    try:
        return load(path, architecture=architecture)
    except CheckpointError as error:
        _remove(path, f"a damaged checkpoint ({'; '.join(error.problems)})")
        return None


def seeded_checkpoint(pair: Pair, seed: int = 0, cache_dir: Path | None = None) -> Checkpoint:
    """The pair's seeded checkpoint: read from the cache (digest verified), else generated.

    A cached file that fails to load (truncated, edited) is regenerated, not trusted; a valid
    checkpoint that is not this seed's (another seed's, a trained one copied there) is refused,
    as is a directory in its place. Concurrent writers (pytest-xdist workers) are safe: writes
    are atomic and no-clobber.

    Raises:
        CacheBlocked: what holds the cache path is neither this seed's checkpoint nor safe
            to remove; nothing was changed.
    """
    __tracebackhide__ = True
    directory = cache_dir or default_cache_dir()
    path = directory / f"{pair.name}-seed{seed}-v{GENERATOR_VERSION}.h5"
    cached = _cached(path, pair.name)
    if cached is not None:
        problem = _not_the_seeds(cached, pair, seed)
        if problem is None:
            return cached
        raise CacheBlocked(path, [
            f"a valid checkpoint, but not {pair.name}'s seeded checkpoint for seed {seed} "
            f"(generator v{GENERATOR_VERSION}) that this cache path holds: {problem}. It "
            f"is not served, nor deleted: {_MOVE_AWAY}"])
    with progress.timed(f"{pair.name}: seeded checkpoint (seed {seed}) generated into {path}"):
        checkpoint = checkpoint_from_torch(seeded_state_dict(pair, seed), pair,
                                           source=f"seeded:{seed}:v{GENERATOR_VERSION}")
        save_once(path, checkpoint)
    return checkpoint


def save_once(path: Path, checkpoint: Checkpoint) -> None:
    """Save a checkpoint generated into a cache; another writer (a pytest-xdist worker) may
    have written the same file first, which is fine.

    Raises:
        CacheBlocked: the file cannot be written (a directory appeared in its place, no
            permission); nothing was changed.
    """
    try:
        save(path, checkpoint)
    except WriteError as error:
        raise CacheBlocked(path, [f"the generated checkpoint cannot be written: "
                                  f"{error.reason}"]) from None
    except CheckpointError:
        if not path.exists():  # only "another worker wrote it first" is expected here
            raise
