"""A canonical file that a user compressed (h5repack, or h5py with compression=): its chunked,
gzip or lzf datasets are read, and it verifies against the digest of the values it holds, the
same as the uncompressed file's; a filter the reader does not decode is refused, named."""

import shutil

import h5py
import ml_dtypes
import numpy as np
import pytest

from pytest_parity.checkpoint import Checkpoint, load, save
from pytest_parity.errors import CheckpointError


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    arrays = {"conv1/kernel": np.arange(24, dtype=np.float32).reshape(2, 1, 3, 4),
              "fc/bias": np.linspace(-1, 1, 1000, dtype=np.float32),
              "fc/zeros": np.zeros((64, 64), np.float32),  # compresses well
              "fc/scale": np.array([0.5, -0.25], dtype=ml_dtypes.bfloat16),
              "bn1/count": np.array(7, dtype=np.int64), "mask": np.array([True, False])}
    return save(tmp_path_factory.mktemp("original") / "tiny.h5",
                Checkpoint("tinynet", arrays, {name: "C" for name in arrays}))


def _rewritten(original, path, **storage):
    """A copy of `original` with every dataset but a scalar (which HDF5 cannot chunk) written
    again with `storage`: the same values, names and attributes."""
    shutil.copy(original, path)
    with h5py.File(path, "a") as h5:
        names = []
        h5.visititems(lambda name, item: names.append(name)
                      if isinstance(item, h5py.Dataset) and item.shape else None)
        for name in names:
            data, attributes = h5[name][()], dict(h5[name].attrs)
            del h5[name]
            h5.create_dataset(name, data=data, **storage).attrs.update(attributes)
            assert h5[name].chunks is not None
    return path


STORAGE = {"gzip": {"compression": "gzip"}, "lzf": {"compression": "lzf"},
           "gzip-9-shuffle": {"compression": "gzip", "compression_opts": 9, "shuffle": True},
           "lzf-fletcher32": {"compression": "lzf", "fletcher32": True},
           "chunked": {"chunks": True}}


@pytest.mark.parametrize("storage", STORAGE.values(), ids=STORAGE.keys())
def test_a_compressed_copy_is_read_and_verifies_against_the_same_digest(original, tmp_path,
                                                                        storage):
    copy = _rewritten(original, tmp_path / "tiny.h5", **storage)
    expected, read = load(original), load(copy)  # load verifies the recorded digest
    assert read.digest() == expected.digest()
    assert read.arrays.keys() == expected.arrays.keys()
    for key, array in expected.arrays.items():
        assert read.arrays[key].dtype == array.dtype
        np.testing.assert_array_equal(read.arrays[key], array)


def test_a_compressed_copy_with_other_values_fails_its_digest(original, tmp_path):
    copy = _rewritten(original, tmp_path / "tiny.h5", compression="gzip")
    with h5py.File(copy, "a") as h5:
        h5["tinynet/fc/bias"][3] = 5.0
    with pytest.raises(CheckpointError, match="does not match the recorded"):
        load(copy)


def _with_unknown_filter(path, key, code=307):
    """`key` written again through HDF5's own calls with filter `code` (bzip2's number, which
    h5py lacks), optional so that HDF5 can write it without the filter."""
    with h5py.File(path, "a") as h5:
        data = h5[f"tinynet/{key}"][()]
        del h5[f"tinynet/{key}"]
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_chunk(data.shape)
        plist.set_filter(code, h5py.h5z.FLAG_OPTIONAL)
        dataset = h5py.h5d.create(h5.id, f"tinynet/{key}".encode(), h5py.h5t.py_create(
            data.dtype), h5py.h5s.create_simple(data.shape), dcpl=plist)
        dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, data)
        h5[f"tinynet/{key}"].attrs["layout"] = "C"


def test_a_filter_the_reader_does_not_decode_is_refused_naming_file_key_and_filter(original,
                                                                                     tmp_path):
    copy = tmp_path / "tiny.h5"
    shutil.copy(original, copy)
    _with_unknown_filter(copy, "fc/bias")
    with pytest.raises(CheckpointError) as error:
        load(copy)
    assert str(error.value).startswith(f"[parity] {copy}: 1 problem")
    assert "fc/bias: compressed with HDF5 filter 307 (unnamed), which is not read (only gzip, " \
           "shuffle, fletcher32, lzf are; refused unread)" in str(error.value)
