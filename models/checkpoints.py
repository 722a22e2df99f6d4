"""Seeded zoo checkpoints, cached on disk and verified by digest before use."""

from __future__ import annotations

import os
from pathlib import Path

from models.seeded import GENERATOR_VERSION, seeded_state_dict
from pytest_parity.checkpoint import Checkpoint, checkpoint_from_torch, load, save
from pytest_parity.errors import CheckpointError
from pytest_parity.registry import Pair


def default_cache_dir() -> Path:
    """$PYTEST_PARITY_CACHE, else the user cache dir (~/.cache/pytest-parity)."""
    configured = os.environ.get("PYTEST_PARITY_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pytest-parity"


def seeded_checkpoint(pair: Pair, seed: int = 0, cache_dir: Path | None = None) -> Checkpoint:
    """The pair's seeded checkpoint: read from the cache (digest verified), else generated.

    A cached file that fails to load (truncated, edited) is regenerated, not trusted.
    Concurrent writers (pytest-xdist workers) are safe: writes are atomic and no-clobber.
    """
    directory = cache_dir or default_cache_dir()
    path = directory / f"{pair.name}-seed{seed}-v{GENERATOR_VERSION}.h5"
    if path.exists():
        try:
            return load(path, architecture=pair.name)
        except CheckpointError:
            path.unlink(missing_ok=True)
    checkpoint = checkpoint_from_torch(seeded_state_dict(pair, seed), pair,
                                       source=f"seeded:{seed}:v{GENERATOR_VERSION}")
    try:
        save(path, checkpoint)
    except CheckpointError:
        if not path.exists():  # only "another worker wrote it first" is expected here
            raise
    return checkpoint
