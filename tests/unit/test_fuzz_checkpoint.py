"""Fuzzing `load` with damaged copies of a small canonical checkpoint (tinynet): bytes flipped,
overwritten or cut at drawn offsets, and structured edits through h5py. Each load must be the
plugin's own error naming the file, or a checkpoint whose arrays equal the original exactly;
a traceback, a hang or a pass on damaged content fails. --fuzz-examples=N sets the count."""

import contextlib
import json

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_parity.checkpoint import load, save
from tests.support.fuzz import fuzz_settings, outcome
from tests.support.tinynet import TINYNET

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    from pytest_parity.checkpoint import checkpoint_from_torch

    torch.manual_seed(0)
    checkpoint = checkpoint_from_torch(TINYNET.torch_model().state_dict(), TINYNET)
    path = save(tmp_path_factory.mktemp("original") / "tiny.h5", checkpoint)
    return path, load(path)


def _check(path, expected):
    kind, result = outcome(lambda: load(path), [path])
    if kind == "ok":  # a pass must be the original content, bit for bit
        assert result.arrays.keys() == expected.arrays.keys()
        for name, array in expected.arrays.items():
            read = result.arrays[name]
            assert (read.dtype, read.shape, read.tobytes()) == (
                array.dtype, array.shape, array.tobytes()), name
    return kind


def _byte_edits(size):
    flip = st.tuples(st.just("flip"), st.integers(0, size - 1), st.integers(0, 7))
    overwrite = st.tuples(st.just("overwrite"), st.integers(0, size - 1),
                          st.binary(min_size=1, max_size=16))
    cut = st.tuples(st.just("cut"), st.integers(0, size - 1), st.just(0))
    return st.lists(flip | overwrite | cut, min_size=1, max_size=3)


def _apply(data, edits):
    data = bytearray(data)
    for kind, offset, value in edits:
        if kind == "flip" and offset < len(data):
            data[offset] ^= 1 << value
        elif kind == "overwrite":
            data[offset:offset + len(value)] = value
        elif kind == "cut":
            del data[offset:]
    return bytes(data)


def test_bytes_damaged_at_drawn_offsets(original, tmp_path, request):
    path, expected = original
    data = path.read_bytes()
    target = tmp_path / "damaged.h5"
    kinds = []

    @given(edits=_byte_edits(len(data)))
    def check(edits):
        target.unlink(missing_ok=True)  # a new file each time: nothing of it is remembered
        target.write_bytes(_apply(data, edits))
        kinds.append(_check(target, expected))

    fuzz_settings(request)(check)()
    assert "error" in kinds


# Values of the types h5py writes as attributes, and some it writes but the format never uses.
ATTRIBUTE_VALUES = (st.integers(-2**63, 2**63 - 1) | st.booleans() | st.floats()
                    | st.text(max_size=40) | st.binary(max_size=20)
                    | st.lists(st.text(max_size=5), min_size=1, max_size=3)
                    | st.lists(st.integers(-9, 9), min_size=0, max_size=3)
                    | st.sampled_from(["pytest-parity-checkpoint", "tinynet", "{}", "[]", "1",
                                       '{"a": 1}', '{"a": "b"}', "null", "{", "0" * 64]))
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)
ENTRY_VALUES = JSON_VALUES | st.sampled_from(["C", "HWIO", "float32", "bfloat16", "int64",
                                              "complex64", "uint16", "object"])


@st.composite
def structured_edits(draw, keys):
    """One edit through h5py, as (description, function of the open file)."""
    kind = draw(st.sampled_from(["attribute", "delete attribute", "dataset", "link", "manifest"]))
    key = f"tinynet/{draw(st.sampled_from(keys))}"
    if kind == "attribute":
        name = draw(st.sampled_from(["format", "format_version", "architecture", "source",
                                     "written_by", "tensors", "digest", "extra"]))
        value = draw(ATTRIBUTE_VALUES)
        return f"{name}={value!r}", lambda h5: h5.attrs.__setitem__(name, value)
    if kind == "delete attribute":
        name = draw(st.sampled_from(["format", "format_version", "architecture", "written_by",
                                     "tensors", "digest", "source"]))
        return f"del {name}", lambda h5: h5.attrs.__delitem__(name)
    if kind == "dataset":
        dtype = draw(st.sampled_from(["f4", "f8", "i8", "u2", "f2", ">f4", "i1", "bool"]))
        shape = draw(st.sampled_from([(), (0,), (4,), (10,), (4, 10), (3, 3, 3, 4)]))
        storage = draw(st.sampled_from(["data", "same values", "gzip", "string", "reference",
                                        "empty", "vlen", "compound"]))
        return f"{key} {storage} {dtype} {shape}", lambda h5: _replace(h5, key, storage,
                                                                      dtype, shape)
    if kind == "link":
        target = draw(st.sampled_from(["/tinynet", "/nowhere", "/tinynet/fc/bias", "/"]))
        link = draw(st.sampled_from(["soft", "external", "group", "datatype", "hard"]))
        return f"{key} -> {link} {target}", lambda h5: _link(h5, key, link, target)
    entry = draw(st.sampled_from(["layout", "dtype", "entry", "drop", "add", "whole"]))
    value = draw(ENTRY_VALUES)
    return f"manifest {entry} {key} {value!r}", lambda h5: _edit_manifest(h5, key, entry, value)


def _replace(h5, key, storage, dtype, shape):
    values = h5[key][()] if isinstance(h5.get(key), h5py.Dataset) else np.zeros(shape, dtype)
    del h5[key]
    if storage == "data":
        h5.create_dataset(key, data=np.zeros(shape, dtype))
    elif storage == "same values":
        h5.create_dataset(key, data=values)
    elif storage == "gzip":
        h5.create_dataset(key, data=values, compression="gzip", chunks=True if np.ndim(values)
                          else None)
    elif storage == "string":
        h5.create_dataset(key, data="a string")
    elif storage == "reference":
        h5.create_dataset(key, shape=shape, dtype=h5py.ref_dtype)
    elif storage == "empty":
        h5.create_dataset(key, data=h5py.Empty(dtype))
    elif storage == "vlen":
        h5.create_dataset(key, shape=shape, dtype=h5py.vlen_dtype(np.dtype(dtype)))
    else:
        h5.create_dataset(key, shape=shape, dtype=[("a", dtype), ("b", "i4")])


def _link(h5, key, link, target):
    values = h5[key] if isinstance(h5.get(key), h5py.Dataset) else None
    if link == "hard" and values is not None:
        h5[f"{key}_twin"] = values  # a second link to the same dataset
        return
    del h5[key]
    if link == "soft":
        h5[key] = h5py.SoftLink(target)
    elif link == "external":
        h5[key] = h5py.ExternalLink("/etc/passwd", target)
    elif link == "group":
        h5.create_group(key)
    elif link == "datatype":
        h5[key] = np.dtype("f4")
    else:
        h5[key] = h5[target]


def _edit_manifest(h5, key, entry, value):
    manifest = json.loads(h5.attrs["tensors"])
    name = key.removeprefix("tinynet/")
    if not isinstance(manifest, dict) or entry == "whole":  # an earlier edit replaced it
        manifest = value
    elif entry in ("layout", "dtype") and isinstance(manifest.get(name), dict):
        manifest[name][entry] = value
    elif entry == "entry":
        manifest[name] = value
    elif entry == "drop":
        manifest.pop(name, None)
    elif entry == "add":
        manifest[f"{name}_new"] = value
    h5.attrs["tensors"] = json.dumps(manifest)


def test_structured_edits_through_h5py(original, tmp_path, request):
    path, expected = original
    data = path.read_bytes()
    target = tmp_path / "edited.h5"
    keys = sorted(expected.arrays)

    @given(edits=st.lists(structured_edits(keys), min_size=1, max_size=3))
    def check(edits):
        target.unlink(missing_ok=True)
        target.write_bytes(data)
        with h5py.File(target, "a") as h5:
            for _, edit in edits:
                # An edit h5py refuses (a link where one already is...) is skipped.
                with contextlib.suppress(ValueError, TypeError, KeyError, OSError, RuntimeError):
                    edit(h5)
        _check(target, expected)

    fuzz_settings(request)(check)()
