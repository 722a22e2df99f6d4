"""save_tensors: the canonical file written tensor by tensor is format.save's file."""

import h5py
import ml_dtypes
import numpy as np
import pytest

from pytest_parity.checkpoint import Checkpoint, load, save, save_tensors
from pytest_parity.errors import CheckpointError

ARRAYS = {
    "layers/0/dense/kernel": np.arange(12, dtype=np.float32).reshape(3, 4),
    "layers/0/norm/weight": np.linspace(-1, 1, 4, dtype=np.float64),
    "embed/embedding": np.array([[0.5, -0.25]], dtype=ml_dtypes.bfloat16),
    "count": np.array(7, dtype=np.int64),
}
LAYOUTS = {"layers/0/dense/kernel": "IO", "layers/0/norm/weight": "C", "embed/embedding": "ND",
           "count": "scalar"}


def _triples(names=ARRAYS):
    for name in names:
        yield name, ARRAYS[name].copy(), LAYOUTS[name]


def _files_in(folder):
    return sorted(path.name for path in folder.iterdir())


def test_a_streamed_checkpoint_loads_verified_and_its_digest_is_saves(tmp_path):
    streamed = save_tensors(tmp_path / "streamed.h5", "tinynet", _triples(reversed(ARRAYS)),
                            source="test")
    saved = save(tmp_path / "saved.h5", Checkpoint("tinynet", dict(ARRAYS), LAYOUTS, "test"))

    checkpoint = load(streamed)  # verifies the digest
    assert checkpoint.architecture == "tinynet" and checkpoint.source == "test"
    assert checkpoint.layouts == LAYOUTS
    for name, array in ARRAYS.items():
        assert checkpoint.arrays[name].dtype == array.dtype
        np.testing.assert_array_equal(checkpoint.arrays[name], array)
    with h5py.File(streamed) as a, h5py.File(saved) as b:
        assert a.attrs["digest"] == b.attrs["digest"] == checkpoint.digest()
        assert a.attrs["tensors"] == b.attrs["tensors"]  # the same manifest, in path order
        assert a.attrs["written_by"] == b.attrs["written_by"]


def test_an_existing_file_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"precious")
    with pytest.raises(CheckpointError, match=r"(?s)^\[parity\] .*the file exists"):
        save_tensors(path, "tinynet", _triples(), source="test")
    assert path.read_bytes() == b"precious"
    assert _files_in(tmp_path) == ["model.h5"]

    save_tensors(path, "tinynet", _triples(), source="test", overwrite=True)
    assert load(path).digest() == Checkpoint("tinynet", dict(ARRAYS), LAYOUTS).digest()


def test_a_generator_raising_midway_leaves_no_file(tmp_path):
    def failing():
        yield from _triples(list(ARRAYS)[:2])
        raise RuntimeError("out of weights")

    with pytest.raises(RuntimeError, match="out of weights"):
        save_tensors(tmp_path / "model.h5", "tinynet", failing(), source="test")
    assert _files_in(tmp_path) == []


def test_every_unwritable_tensor_is_listed_and_no_file_is_left(tmp_path):
    tensors = [("a/kernel", np.zeros(2, np.float32), "IO"),
               ("a/kernel", np.zeros(2, np.float32), "IO"),
               ("a/kernel/extra", np.zeros(2, np.float32), "IO"),
               ("b//x", np.zeros(2, np.float32), "C"),
               ("c", np.array(["text"]), "C"),
               ("d", np.zeros(2, np.float32), "")]
    with pytest.raises(CheckpointError) as raised:
        save_tensors(tmp_path / "model.h5", "tinynet", iter(tensors), source="test")
    assert str(raised.value).startswith("[parity] ")
    assert raised.value.path == tmp_path / "model.h5"
    assert raised.value.problems == [
        "a/kernel: given twice",
        "a/kernel/extra: is both a tensor and a group of tensors",
        "'b//x': a canonical path is 'group/.../name', without empty parts",
        "c: dtype <U4 is not one of ['bfloat16', 'bool', 'float16', 'float32', 'float64', "
        "'int16', 'int32', 'int64', 'int8', 'uint8']",
        "d: no layout declared (e.g. 'HWIO', 'IO', 'C', 'scalar')"]
    assert _files_in(tmp_path) == []


def test_a_bad_architecture_is_refused_before_any_tensor_is_drawn(tmp_path):
    drawn = []

    def tensors():
        drawn.append(1)
        yield from _triples()

    with pytest.raises(CheckpointError, match="architecture 'a/b' must be"):
        save_tensors(tmp_path / "model.h5", "a/b", tensors(), source="test")
    assert drawn == [] and _files_in(tmp_path) == []


def test_the_stream_holds_one_tensor_at_a_time(tmp_path):
    """Each array yielded is released before the next is drawn (a weak reference dies)."""
    import weakref

    alive = []

    def tensors():
        for index in range(4):
            if alive:
                assert alive[-1]() is None, "the previous tensor is still held"
            array = np.full((8, 8), index, np.float32)
            alive.append(weakref.ref(array))
            yield f"t{index}", array, "IO"
            del array

    save_tensors(tmp_path / "model.h5", "tinynet", tensors(), source="test")
    assert sorted(load(tmp_path / "model.h5").arrays) == ["t0", "t1", "t2", "t3"]
