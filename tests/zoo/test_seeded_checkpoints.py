"""Seeded checkpoints: deterministic bytes, realistic statistics, a cache verified by digest."""

import numpy as np
import pytest

from models.checkpoints import seeded_checkpoint
from models.seeded import seeded_state_dict
from pytest_parity import registry
from pytest_parity.checkpoint import content_digest
from tests.support.tinynet import TINYNET

pytest.importorskip("torch")
pytest.importorskip("flax")

# numpy's legacy RandomState stream is frozen across numpy versions; so is this digest. A
# change here means every cached checkpoint and golden manifest changes too: bump
# models.seeded.GENERATOR_VERSION when it is intended.
TINYNET_SEED0_DIGEST = "c3a5061e8a2b798b953dbc8f9d8da301dd72e95b332ecc0418c559608a77e692"


def test_the_stream_is_frozen():
    state = seeded_state_dict(TINYNET, 0)
    # RandomState(0)'s first normal draw is 1.764052345967664; He scale for a 3x3x3 fan-in.
    assert state["conv1.weight"].ravel()[0] == np.float32(1.764052345967664 * np.sqrt(2 / 27))
    assert content_digest(state) == TINYNET_SEED0_DIGEST


def test_same_seed_same_bytes_other_seed_other_bytes():
    first, again = seeded_state_dict(TINYNET, 0), seeded_state_dict(TINYNET, 0)
    assert content_digest(first) == content_digest(again)
    assert content_digest(seeded_state_dict(TINYNET, 1)) != content_digest(first)


@pytest.mark.parametrize("name", ["resnet18", "vit_ti_16"])
def test_no_tensor_that_torchvision_sets_to_a_constant_stays_constant(name):
    state = seeded_state_dict(registry.get(name), 0)
    constant = [key for key, value in state.items()
                if value.size > 1 and value.dtype.kind == "f" and np.ptp(value) == 0]
    assert constant == []
    assert all(value.dtype == np.float32 for key, value in state.items()
               if not key.endswith("num_batches_tracked"))


def test_cache_is_reused_and_a_corrupt_file_regenerated(tmp_path):
    made = seeded_checkpoint(TINYNET, 0, cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    modified = path.stat().st_mtime_ns
    assert seeded_checkpoint(TINYNET, 0, cache_dir=tmp_path).digest() == made.digest()
    assert path.stat().st_mtime_ns == modified  # read, not rewritten
    path.write_bytes(path.read_bytes()[:100])
    assert seeded_checkpoint(TINYNET, 0, cache_dir=tmp_path).digest() == made.digest()


def test_a_valid_checkpoint_that_is_not_the_seeds_is_refused_not_served(tmp_path):
    """The digest checks a file against itself only: another seed's checkpoint, or one whose
    source was forged, placed at a seed's cache path was served."""
    import shutil

    from pytest_parity.checkpoint import Checkpoint, save
    from pytest_parity.errors import CheckpointError

    seed1 = seeded_checkpoint(TINYNET, 1, cache_dir=tmp_path / "one")
    (seed1_path,) = (tmp_path / "one").iterdir()
    cache = tmp_path / "zero"
    cache.mkdir()
    target = cache / seed1_path.name.replace("seed1", "seed0")
    shutil.copy(seed1_path, target)
    with pytest.raises(CheckpointError) as error:
        seeded_checkpoint(TINYNET, 0, cache_dir=cache)
    assert f"[parity] {target}: 1 problem" in str(error.value)
    assert "its source is 'seeded:1:v1', not 'seeded:0:v1'" in str(error.value)
    assert target.read_bytes() == seed1_path.read_bytes()  # not deleted, not rewritten
    forged = Checkpoint(seed1.architecture, seed1.arrays, seed1.layouts, source="seeded:0:v1")
    save(target, forged, overwrite=True)
    with pytest.raises(CheckpointError, match="conv1/kernel is not seed 0's draw"):
        seeded_checkpoint(TINYNET, 0, cache_dir=cache)
