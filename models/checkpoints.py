"""Seeded zoo checkpoints, cached on disk and verified by digest before use."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.seeded import GENERATOR_VERSION, first_drawn, seeded_state_dict
from pytest_parity import progress
from pytest_parity.caches import user_cache_dir as default_cache_dir
from pytest_parity.checkpoint import Checkpoint, checkpoint_from_torch, load, save
from pytest_parity.errors import CheckpointError
from pytest_parity.registry import Pair


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


def seeded_checkpoint(pair: Pair, seed: int = 0, cache_dir: Path | None = None) -> Checkpoint:
    """The pair's seeded checkpoint: read from the cache (digest verified), else generated.

    A cached file that fails to load (truncated, edited) is regenerated, not trusted; a valid
    checkpoint that is not this seed's (another seed's, a trained one copied there) is refused.
    Concurrent writers (pytest-xdist workers) are safe: writes are atomic and no-clobber.
    """
    directory = cache_dir or default_cache_dir()
    path = directory / f"{pair.name}-seed{seed}-v{GENERATOR_VERSION}.h5"
    if path.exists():
        try:
            cached = load(path, architecture=pair.name)
        except CheckpointError:
            path.unlink(missing_ok=True)
        else:
            problem = _not_the_seeds(cached, pair, seed)
            if problem is None:
                return cached
            raise CheckpointError(path, [
                f"a valid checkpoint, but not {pair.name}'s seeded checkpoint for seed {seed} "
                f"(generator v{GENERATOR_VERSION}) that this cache path holds: {problem}. It "
                "is not served, nor deleted: move it away and it is regenerated."])
    with progress.timed(f"{pair.name}: seeded checkpoint (seed {seed}) generated into {path}"):
        checkpoint = checkpoint_from_torch(seeded_state_dict(pair, seed), pair,
                                           source=f"seeded:{seed}:v{GENERATOR_VERSION}")
        save_once(path, checkpoint)
    return checkpoint


def save_once(path: Path, checkpoint: Checkpoint) -> None:
    """Save a checkpoint generated into a cache; another writer (a pytest-xdist worker) may
    have written the same file first, which is fine."""
    try:
        save(path, checkpoint)
    except CheckpointError:
        if not path.exists():  # only "another worker wrote it first" is expected here
            raise
