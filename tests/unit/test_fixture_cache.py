"""The seeded checkpoint cache when something else holds a seed's cache path: a directory, a
symbolic link that leads nowhere (a loop, a dangling target), another seed's checkpoint.

Nothing of value is touched: a directory, a link's target and a valid checkpoint are never
removed or rewritten; a link that leads to no file is replaced (the link alone). What cannot be
regenerated fails as one `[parity]` message naming the path, also out of the fixtures.
"""

import os
import shutil

import pytest

from models.checkpoints import seeded_checkpoint
from models.seeded import GENERATOR_VERSION
from pytest_parity.caches import CHECKPOINTS_DIR
from pytest_parity.errors import CheckpointError
from tests.support.tinynet import TINYNET

pytest.importorskip("torch")
pytest.importorskip("flax")

NAME = f"tinynet-seed0-v{GENERATOR_VERSION}.h5"


def _directory_in_place(cache):
    path = cache / NAME
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("mine")
    return path


def test_a_directory_in_place_is_refused_by_name_and_kept(tmp_path):
    path = _directory_in_place(tmp_path)
    with pytest.raises(CheckpointError) as error:
        seeded_checkpoint(TINYNET, 0, cache_dir=tmp_path)
    message = str(error.value)
    assert message.startswith(f"[parity] {path}: 1 problem")
    assert "a directory" in message and "move it away" in message
    assert (path / "notes.txt").read_text() == "mine"


def test_a_link_to_a_directory_is_replaced_and_the_directory_kept(tmp_path):
    elsewhere = _directory_in_place(tmp_path / "elsewhere")
    path = tmp_path / NAME
    path.symlink_to(elsewhere)
    seeded_checkpoint(TINYNET, 0, cache_dir=tmp_path)
    assert path.is_file() and not path.is_symlink()
    assert [p.name for p in elsewhere.iterdir()] == ["notes.txt"]
    assert (elsewhere / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("links", [
    pytest.param({NAME: NAME}, id="itself"),
    pytest.param({NAME: "b.h5", "b.h5": NAME}, id="a-b-a"),
    pytest.param({NAME: "gone.h5"}, id="dangling"),
])
def test_a_link_that_leads_to_no_file_is_replaced_and_only_the_link(tmp_path, links):
    for name, target in links.items():
        (tmp_path / name).symlink_to(target)
    made = seeded_checkpoint(TINYNET, 0, cache_dir=tmp_path)
    path = tmp_path / NAME
    assert path.is_file() and not path.is_symlink()
    assert seeded_checkpoint(TINYNET, 0, cache_dir=tmp_path).digest() == made.digest()
    others = {name: target for name, target in links.items() if name != NAME}
    assert {name: os.readlink(tmp_path / name) for name in others} == others
    assert not (tmp_path / "gone.h5").exists()  # the link's target was not created


def test_a_link_to_a_valid_cached_file_is_served_and_kept(tmp_path):
    made = seeded_checkpoint(TINYNET, 0, cache_dir=tmp_path / "shared")
    path = tmp_path / NAME
    path.symlink_to(tmp_path / "shared" / NAME)
    assert seeded_checkpoint(TINYNET, 0, cache_dir=tmp_path).digest() == made.digest()
    assert path.is_symlink()


def _other_seeds_checkpoint_in_place(cache, scratch):
    seeded_checkpoint(TINYNET, 1, cache_dir=scratch)
    (seed1,) = scratch.iterdir()
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy(seed1, cache / NAME)
    return cache / NAME, seed1.read_bytes()


def test_another_seeds_checkpoint_is_refused_and_kept(tmp_path):
    path, content = _other_seeds_checkpoint_in_place(tmp_path / "cache", tmp_path / "one")
    with pytest.raises(CheckpointError) as error:
        seeded_checkpoint(TINYNET, 0, cache_dir=tmp_path / "cache")
    assert str(error.value).startswith(f"[parity] {path}: 1 problem")
    assert "move it away" in str(error.value)
    assert path.read_bytes() == content


def test_a_cache_that_cannot_be_written_fails_as_one_message(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("not a directory")
    with pytest.raises(CheckpointError) as error:
        seeded_checkpoint(TINYNET, 0, cache_dir=blocker)
    assert str(error.value).startswith(f"[parity] {blocker / NAME}: 1 problem")
    assert f"{blocker} is a file, not a directory" in str(error.value)
    assert blocker.read_text() == "not a directory"


FIXTURE_TEST = """
import pytest

from models.checkpoints import seeded_checkpoint
from pytest_parity.registry import Pair, register
from tests.support.tinynet import TINYNET

register(Pair("tinynet_seeded", TINYNET.torch_model, TINYNET.flax_model, TINYNET.mapping,
              TINYNET.input_shape,
              checkpoint=lambda seed, cache_dir: seeded_checkpoint(TINYNET, seed, cache_dir)))


def test_checkpoint(parity_checkpoint):
    parity_checkpoint("tinynet_seeded")


@pytest.mark.parity(dtypes=["float32"])
def test_pair(parity_pair):
    parity_pair("tinynet_seeded")
"""


def _fixture_cache(pytester):
    return pytester.path / ".pytest_cache" / "d" / CHECKPOINTS_DIR


def _assert_clean_failure(result, path):
    result.assert_outcomes(failed=2)
    output = result.stdout.str()
    assert output.count(f"[parity] {path}: 1 problem") >= 2
    assert "move it away" in output
    for internal in ("Traceback", "checkpoints.py", "fixtures.py", "loading.py", "raise "):
        assert internal not in output, internal


@pytest.mark.parametrize("setup", ["directory", "other seed"])
def test_the_fixture_fails_cleanly_and_keeps_what_is_in_the_way(pytester, tmp_path, setup):
    cache = _fixture_cache(pytester)
    if setup == "directory":
        path = _directory_in_place(cache)
    else:
        path, content = _other_seeds_checkpoint_in_place(cache, tmp_path)
    pytester.makepyfile(test_uses_checkpoint=FIXTURE_TEST)
    _assert_clean_failure(pytester.runpytest("-p", "no:randomly"), path)
    if setup == "directory":
        assert (path / "notes.txt").read_text() == "mine"
    else:
        assert path.read_bytes() == content


def test_the_fixture_replaces_a_link_loop_and_passes(pytester):
    cache = _fixture_cache(pytester)
    cache.mkdir(parents=True)
    (cache / NAME).symlink_to(NAME)
    pytester.makepyfile(test_uses_checkpoint=FIXTURE_TEST)
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=2)
    assert (cache / NAME).is_file() and not (cache / NAME).is_symlink()
