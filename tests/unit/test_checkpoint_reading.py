"""A damaged canonical file, as one table: each is the plugin's own error naming the file and
the key, found before any tensor is read; a file that makes the HDF5 library loop or crash is
stopped in the probe process (pytest_parity/checkpoint/probe.py), not in the test run."""

import json
import shutil
import struct
import sys
import time

import h5py
import ml_dtypes
import numpy as np
import pytest

from pytest_parity.checkpoint import Checkpoint, load, save
from pytest_parity.checkpoint import probe as probe_module
from pytest_parity.errors import CheckpointError
from tests.support.fuzz import outcome


def _arrays():
    return {"conv1/kernel": np.arange(24, dtype=np.float32).reshape(2, 1, 3, 4),
            "fc/bias": np.linspace(-1, 1, 10, dtype=np.float32),
            "fc/scale": np.array([0.5, -0.25], dtype=ml_dtypes.bfloat16),
            "bn1/count": np.array(7, dtype=np.int64), "mask": np.array([True, False])}


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    arrays = _arrays()
    return save(tmp_path_factory.mktemp("original") / "tiny.h5",
                Checkpoint("tinynet", arrays, {name: "C" for name in arrays}))


@pytest.fixture
def copy(original, tmp_path):
    path = tmp_path / "tiny.h5"
    shutil.copy(original, path)
    return path


def _h5(edit):
    def damage(path):
        with h5py.File(path, "a") as h5:
            edit(h5)
    return damage


def _bytes(edit):
    def damage(path):
        data = bytearray(path.read_bytes())
        edit(data)
        path.write_bytes(data)
    return damage


def _attrs(**attrs):
    return _h5(lambda h5: h5.attrs.update(attrs))


def _manifest(key, entry):
    def edit(h5):
        h5.attrs["tensors"] = json.dumps({**json.loads(h5.attrs["tensors"]), key: entry})
    return _h5(edit)


def _replace(key, **dataset):
    def edit(h5):
        del h5[f"tinynet/{key}"]
        h5.create_dataset(f"tinynet/{key}", **dataset)
    return _h5(edit)


def _link(key, value):
    def edit(h5):
        del h5[f"tinynet/{key}"]
        h5[f"tinynet/{key}"] = value
    return _h5(edit)


def _named_type(h5):
    h5["tinynet/fc/t"] = np.dtype("f4")
    del h5["tinynet/fc/bias"]
    h5["tinynet/fc/bias"] = h5["tinynet/fc/t"]
    del h5["tinynet/fc/t"]


def _group_for_tensor(h5):
    del h5["tinynet/fc/bias"]
    h5.create_group("tinynet/fc/bias")


def _signature(old):
    def edit(data):
        at = data.find(old)
        data[at:at + 4] = b"XXXX"
    return _bytes(edit)


# (id, an edit through h5py or of the bytes, expected words). Under each id, what the reader
# before these checks did instead: a traceback (type), a pass, or a MemoryError.
STRUCTURE = [
    ("version-array", _attrs(format_version=[1, 1]),  # ValueError
     "root attribute 'format_version': int64 of shape (2,) where a single integer"),
    ("version-bool", _attrs(format_version=True),  # passed: True == 1
     "root attribute 'format_version': bool of shape () where a single integer"),
    ("manifest-array", _attrs(tensors=[1, 2]),  # ValueError
     "root attribute 'tensors': int64 of shape (2,) where a single string"),
    ("source-not-utf8", _attrs(source=np.array(b"\xff\xfe", dtype=h5py.string_dtype())),
     "root attribute 'source': str '\\udcff\\udcfe' where a UTF-8 string"),  # passed
    ("written-by-not-json", _attrs(written_by="{"),  # JSONDecodeError
     "the root attribute 'written_by' (the versions of the libraries that wrote it) is "
     "missing or not a JSON object"),
    ("written-by-a-list", _attrs(written_by="[1]"),  # passed
     "the root attribute 'written_by'"),
    ("written-by-numbers", _attrs(written_by='{"torch": 2}'),  # passed
     "the root attribute 'written_by'"),
    ("architecture-array", _attrs(architecture=["tinynet"]),
     "root attribute 'architecture': object of shape (1,)"),
    ("manifest-deep", _attrs(tensors="[" * 100_000),  # RecursionError
     "the root attribute 'tensors' (each tensor's layout and dtype) is missing or not"),
    ("entry-a-list", _manifest("fc/bias", [1]),  # AttributeError
     "fc/bias: its manifest entry [1] is not {\"layout\": \"...\", \"dtype\": \"...\"}"),
    ("layout-a-number", _manifest("fc/bias", {"layout": 3, "dtype": "float32"}),  # passed
     "fc/bias: its manifest entry {'layout': 3, 'dtype': 'float32'} is not"),
    ("dtype-unsupported", _manifest("fc/bias", {"layout": "C", "dtype": "complex64"}),
     "fc/bias: declared dtype 'complex64' is not one of"),
    ("string-dataset", _replace("fc/bias", data="hello"),
     "fc/bias: declared float32 but stored as object"),
    ("reference-dataset", _replace("fc/bias", shape=(2,), dtype=h5py.ref_dtype),
     "fc/bias: declared float32 but stored as object"),
    ("compound-dataset", _replace("fc/bias", shape=(10,), dtype=[("a", "f4"), ("b", "i4")]),
     "fc/bias: declared float32 but stored as [('a', '<f4'), ('b', '<i4')]"),
    ("vlen-dataset", _replace("fc/bias", shape=(10,), dtype=h5py.vlen_dtype("f4")),
     "fc/bias: declared float32 but stored as object"),
    ("big-endian", _replace("fc/bias", data=np.zeros(10, ">f4")),
     "fc/bias: declared float32 but stored as >f4"),
    ("empty-dataset", _replace("fc/bias", data=h5py.Empty("f4")),
     "fc/bias: an empty dataset (no dataspace), not a tensor"),
    ("dangling-soft-link", _link("fc/bias", h5py.SoftLink("/nowhere")),  # TypeError
     "fc/bias: declared as a tensor, but the file holds a soft link to '/nowhere' there"),
    ("soft-link-to-a-tensor", _link("fc/bias", h5py.SoftLink("/tinynet/conv1/kernel")),
     "fc/bias: declared as a tensor, but the file holds a soft link"),
    ("external-link", _link("fc/bias", h5py.ExternalLink("/etc/passwd", "/x")),  # TypeError
     "fc/bias: declared as a tensor, but the file holds an external link to '/etc/passwd:/x'"),
    ("named-datatype", _h5(_named_type),  # TypeError
     "fc/bias: declared as a tensor, but the file holds a named datatype there"),
    ("group-for-tensor", _h5(_group_for_tensor),
     "fc/bias: declared as a tensor, but the file holds a group there"),
    ("cycle", _h5(lambda h5: h5["tinynet/fc"].__setitem__("loop", h5["tinynet"])),  # Recursion
     "fc/loop: a second hard link to an object the file holds elsewhere"),
    ("huge-shape", _replace("fc/bias", shape=(10**12,), dtype="f4", chunks=(1000,)),
     "fc/bias: shape (1000000000000,) of float32 (4,000,000,000,000 bytes) does not fit in "
     "the file"),  # MemoryError
    ("huge-compressed", _replace("fc/bias", shape=(10**9,), dtype="f4", chunks=(10**6,),
                                 compression="gzip"),  # no chunk written: nothing to inflate
     "fc/bias: shape (1000000000,) of float32 (4,000,000,000 bytes) does not fit in the file"),
    ("external-storage", _replace("fc/bias", shape=(10,), dtype="f4",
                                  external=[("/etc/hostname", 0, 40)]),  # read it
     "fc/bias: stored in external files, which the writer never does (refused unread)"),
    ("never-written", _replace("fc/bias", shape=(10,), dtype="f4"),
     "fc/bias: its 40 bytes were never written (no storage in the file)"),
    ("b-tree-signature", _signature(b"TREE"),  # RuntimeError
     "the root group: cannot be read (RuntimeError: "),
    ("local-heap-signature", _signature(b"HEAP"),  # RuntimeError
     "the root group: cannot be read (RuntimeError: "),
    ("symbol-node-signature", _signature(b"SNOD"), "cannot be read (RuntimeError: "),
    ("global-heap-signature", _signature(b"GCOL"),
     "root attribute 'format': cannot be read (OSError: "),
]


@pytest.mark.parametrize(("damage", "message"), [case[1:] for case in STRUCTURE],
                         ids=[case[0] for case in STRUCTURE])
def test_damaged_structure_is_named_before_data_is_read(copy, damage, message):
    damage(copy)
    kind, text = outcome(lambda: load(copy), [copy])
    assert kind == "error"
    assert message in text


def _global_heap_loop(data):
    """The hang the fuzzing found: a global heap object whose size misleads HDF5's parse of
    the collection onto an object of index 0 (free space) and size 0; H5HG's deserializer then
    advances by 0 bytes forever, holding the GIL. Here it is made directly: the collection's
    first object header zeroed (the fuzz's find: one bit of an object's size, byte 2536)."""
    at = data.find(b"GCOL")
    data[at + 16:at + 32] = bytes(16)


def _string_length_bomb(data):
    """The 'format' attribute's string length made ~4.3e9: HDF5 allocates it (measured 7.5 s,
    4.2 GB) before it finds the heap object too short."""
    at = data.find(b"GCOL")
    descriptor = data.find(struct.pack("<IQ", len("pytest-parity-checkpoint"), at))
    data[descriptor + 3] = 0xFF


@pytest.fixture
def quick_probe(monkeypatch):
    monkeypatch.setattr(probe_module, "PROBE_SECONDS", 2.0)


def test_a_file_that_makes_hdf5_loop_forever_is_stopped(copy, original, quick_probe):
    _bytes(_global_heap_loop)(copy)
    started = time.monotonic()
    kind, text = outcome(lambda: load(copy), [copy])
    assert (kind, time.monotonic() - started < 30) == ("error", True)
    assert "took over 2 s and was stopped: a damaged HDF5 file can make the HDF5 library " \
           "loop forever" in text
    assert load(original).arrays.keys() == _arrays().keys()  # a new probe process serves


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the memory limit uses /proc")
def test_a_string_length_of_gigabytes_is_refused_quickly(copy):
    _bytes(_string_length_bomb)(copy)
    started = time.monotonic()
    kind, text = outcome(lambda: load(copy), [copy])
    assert kind == "error" and time.monotonic() - started < 5
    assert "root attribute 'format'" in text


def test_a_probe_process_that_crashes_is_an_error(copy, monkeypatch):
    prober = probe_module._Prober()
    crash = "import os, sys; print('ready', flush=True); sys.stdin.readline(); os.abort()"
    monkeypatch.setattr(prober, "command", [sys.executable, "-c", crash])
    problems = prober.check(copy, None)
    assert len(problems) == 1 and problems[0].startswith(
        "the HDF5 library crashed reading the file's structure (exit status -6")


def test_a_file_read_safely_is_remembered_until_it_changes(copy, monkeypatch):
    monkeypatch.setattr(probe_module, "RACY_NS", -10**12)  # this file is seconds old at most
    checks = []
    real_check = probe_module._PROBER.check
    monkeypatch.setattr(probe_module._PROBER, "check",
                        lambda *args: checks.append(args) or real_check(*args))
    load(copy)
    load(copy)
    assert len(checks) == 1
    with open(copy, "r+b") as file:  # in place: the same inode and size, a new mtime
        file.write(b"\x00")
    with pytest.raises(CheckpointError, match="not a readable HDF5 file"):
        load(copy)
    assert len(checks) == 2


def test_a_relative_path_is_read_after_the_working_folder_changed(original, copy, monkeypatch):
    load(original)  # the probe process starts in this folder
    monkeypatch.chdir(copy.parent)
    assert load("tiny.h5").arrays.keys() == _arrays().keys()
