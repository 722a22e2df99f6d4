import errno
import fcntl
import io
import json
import os
import zipfile

import numpy as np
import pytest

from pytest_parity import golden
from pytest_parity.atomic import WriteError
from pytest_parity.cli import main
from pytest_parity.errors import PREFIX
from pytest_parity.golden import lock
from tests.support.tinynet import TINYNET

OUTPUTS = {"photo": np.arange(4, dtype=np.float32).reshape(1, 4)}
MANIFEST = {"source": "test", "checkpoint": {"digest": "a" * 64},
            "outputs": {"photo": {"input_digest": "b" * 64}}}


@pytest.fixture(autouse=True)
def _not_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)


def test_written_goldens_read_back_with_their_manifest(tmp_path):
    golden.write(tmp_path, "net", OUTPUTS, MANIFEST)
    read = golden.read(tmp_path, "net")
    assert np.array_equal(read.outputs["photo"], OUTPUTS["photo"])
    assert read.manifest["model"] == "net"
    assert read.manifest["outputs"]["photo"]["shape"] == [1, 4]
    assert read.manifest["outputs"]["photo"]["input_digest"] == "b" * 64


def test_nothing_is_written_under_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(golden.GoldenError, match="refusing to write golden outputs under CI"):
        golden.write(tmp_path, "net", OUTPUTS, MANIFEST, update=True)
    assert list(tmp_path.iterdir()) == []


def test_existing_goldens_are_rewritten_only_with_update(tmp_path):
    golden.write(tmp_path, "net", OUTPUTS, MANIFEST)
    changed = {"photo": OUTPUTS["photo"] + 1}
    with pytest.raises(golden.GoldenError, match="golden outputs exist; pass --update"):
        golden.write(tmp_path, "net", changed, MANIFEST)
    assert np.array_equal(golden.read(tmp_path, "net").outputs["photo"], OUTPUTS["photo"])
    golden.write(tmp_path, "net", changed, MANIFEST, update=True)
    assert np.array_equal(golden.read(tmp_path, "net").outputs["photo"], changed["photo"])


def test_missing_and_tampered_goldens_are_named(tmp_path):
    with pytest.raises(golden.GoldenError, match=r"no golden outputs for 'net'; write them "
                                                 r"with `parity golden net`"):
        golden.read(tmp_path, "net")
    arrays, _ = golden.write(tmp_path, "net", OUTPUTS, MANIFEST)
    np.savez(arrays, photo=OUTPUTS["photo"] * 2)
    with pytest.raises(golden.GoldenError, match="photo: not the array its manifest describes"):
        golden.read(tmp_path, "net")


def test_provenance_mismatch_names_checkpoint_and_input(tmp_path):
    golden.write(tmp_path, "net", OUTPUTS, MANIFEST)
    read = golden.read(tmp_path, "net")
    assert golden.provenance_problems(read, "a" * 64, {"photo": "b" * 64}) == []
    assert golden.provenance_problems(read, "c" * 64, {"photo": "d" * 64}) == [
        "checkpoint digest cccccccccccc… but the goldens were computed from aaaaaaaaaaaa…",
        "input 'photo' digest dddddddddddd… but the goldens were computed from bbbbbbbbbbbb…"]


def test_cli_writes_goldens_of_a_registered_pair_and_refuses_to_clobber(tmp_path, capsys):
    pytest.importorskip("torch")
    assert TINYNET.golden is not None
    assert main(["golden", "tinynet", "--dir", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "tinynet.json").read_text())
    assert manifest["format"] == golden.GOLDEN_FORMAT
    assert manifest["source"] == "tests.support.tinynet"
    assert main(["golden", "tinynet", "--dir", str(tmp_path)]) == 2
    assert "golden outputs exist" in capsys.readouterr().err


def _npz_member(path, header, data):
    """An .npz whose one member 'photo.npy' has this header and these data bytes."""
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, header)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("photo.npy", member.getvalue() + data)


def _truncated(arrays, manifest):
    arrays.write_bytes(arrays.read_bytes()[:len(arrays.read_bytes()) // 2])
    return arrays


def _one_array_not_an_archive(arrays, manifest):
    np.save(arrays.open("wb"), OUTPUTS["photo"])
    return arrays


def _absurd_shape(arrays, manifest):
    _npz_member(arrays, {"descr": "<f4", "fortran_order": False, "shape": (2**40,)},
                bytes(16))
    return arrays


def _object_array(arrays, manifest):
    member = io.BytesIO()
    np.save(member, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(arrays, "w") as archive:
        archive.writestr("photo.npy", member.getvalue())
    return arrays


def _a_member_missing(arrays, manifest):
    document = json.loads(manifest.read_text())
    document["outputs"]["random"] = {"digest": "c" * 64}
    manifest.write_text(json.dumps(document))
    return arrays


def _edited(**fields):
    def edit(arrays, manifest):
        document = json.loads(manifest.read_text())
        for field, value in fields.items():
            if field == "entry":
                document["outputs"]["photo"] = value
            elif field == "digest":
                document["outputs"]["photo"]["digest"] = value
            else:
                document[field] = value
        manifest.write_text(json.dumps(document))
        return manifest
    return edit


def _manifest_text(text):
    def edit(arrays, manifest):
        manifest.write_bytes(text)
        return manifest
    return edit


DAMAGED = {
    "npz truncated": _truncated,
    "npz holds one array, not an archive": _one_array_not_an_archive,
    "npy header shape of 2**40 floats": _absurd_shape,
    "npy object array": _object_array,
    "npz lacks an output of the manifest": _a_member_missing,
    "manifest a list": _manifest_text(b"[1, 2]"),
    "manifest nested 3000 deep": _manifest_text(b"[" * 3000 + b"]" * 3000),
    "manifest not UTF-8": _manifest_text(b'{"format": "\xff"}'),
    "outputs a list": _edited(outputs=[]),
    "an output a string": _edited(entry="photo"),
    "a digest a number": _edited(digest=5),
    "checkpoint a string": _edited(checkpoint="a" * 64),
}


@pytest.mark.parametrize("ci", [None, "true"], ids=["workstation", "CI"])
@pytest.mark.parametrize("damage", list(DAMAGED), ids=list(DAMAGED))
def test_damaged_goldens_are_a_clean_error_naming_the_file(tmp_path, monkeypatch, damage, ci):
    arrays, manifest = golden.write(tmp_path, "net", OUTPUTS, MANIFEST)
    damaged = DAMAGED[damage](arrays, manifest)
    if ci:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(golden.GoldenError) as raised:
        golden.read(tmp_path, "net")
    assert str(raised.value).startswith(f"{PREFIX} {damaged}"), str(raised.value)


def test_a_golden_name_that_is_a_path_is_refused(tmp_path):
    with pytest.raises(golden.GoldenError, match=r"'\.\./net' is not a golden file name"):
        golden.read(tmp_path, "../net")


@pytest.fixture
def _second_rename_fails(monkeypatch):
    replace = os.replace

    def fail_for_manifest(source, target):
        if str(target).endswith(".json"):
            raise OSError(errno.EIO, "Input/output error")
        replace(source, target)

    monkeypatch.setattr(os, "replace", fail_for_manifest)


def _listing(directory):
    return {path.name: path.read_bytes() for path in directory.iterdir()}


def test_an_update_that_fails_halfway_leaves_the_old_pair(tmp_path, _second_rename_fails):
    golden.write(tmp_path, "net", OUTPUTS, MANIFEST)
    before = _listing(tmp_path)
    with pytest.raises(WriteError, match=r"net\.json: cannot write it: Input/output error"):
        golden.write(tmp_path, "net", {"photo": OUTPUTS["photo"] + 1}, MANIFEST, update=True)
    assert _listing(tmp_path) == before  # the old .npz put back; no temporary, no backup
    assert np.array_equal(golden.read(tmp_path, "net").outputs["photo"], OUTPUTS["photo"])


def test_a_directory_in_the_manifests_place_leaves_the_arrays_alone(tmp_path):
    arrays, manifest = golden.write(tmp_path, "net", OUTPUTS, MANIFEST)
    old = arrays.read_bytes()
    manifest.unlink()
    manifest.mkdir()
    with pytest.raises(WriteError, match=r"net\.json: cannot write it: a directory is in its"):
        golden.write(tmp_path, "net", {"photo": OUTPUTS["photo"] + 1}, MANIFEST, update=True)
    assert arrays.read_bytes() == old
    assert sorted(path.name for path in tmp_path.iterdir()) == ["net.json", "net.npz"]


def test_a_lock_held_too_long_is_a_clean_error(tmp_path):
    held = os.open(lock.lock_path(tmp_path, "net"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(golden.GoldenError, match=r"\.net\.lock: another process has held "
                                                     r"the golden file's lock for 0\.2s"), \
                lock.locked(tmp_path, "net", seconds=0.2):
            pass
    finally:
        os.close(held)
    with lock.locked(tmp_path, "net", seconds=0.2):  # released with its holder
        pass


def _refusing(monkeypatch, refused_flags):
    """os.open refusing (EACCES) opens whose flags include any of `refused_flags`."""
    opened = os.open

    def open_(path, flags, *mode):
        if flags & refused_flags or refused_flags == -1:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return opened(path, flags, *mode)

    monkeypatch.setattr(lock.os, "open", open_)


def test_a_lock_file_another_user_left_read_only_is_locked_for_reading(tmp_path, monkeypatch):
    _refusing(monkeypatch, os.O_RDWR)
    with pytest.raises(golden.GoldenError, match=r"\.net\.lock: cannot make the golden file's "
                                                 r"lock file \(Permission denied\)"), \
            lock.locked(tmp_path, "net", seconds=0.2):
        pass
    lock.lock_path(tmp_path, "net").write_text("")
    with lock.locked(tmp_path, "net", seconds=0.2):
        pass


def test_an_unopenable_lock_file_is_a_clean_error(tmp_path, monkeypatch):
    _refusing(monkeypatch, -1)
    lock.lock_path(tmp_path, "net").write_text("")
    with pytest.raises(golden.GoldenError, match=r"\.net\.lock: cannot open the golden file's "
                                                 r"lock file \(Permission denied\); remove it"), \
            lock.locked(tmp_path, "net", seconds=0.2):
        pass


def test_the_fixtures_merge_that_fails_halfway_leaves_the_old_pair(tmp_path,
                                                                  _second_rename_fails):
    fixture = golden.GoldenFixture(tmp_path, "test_x.py::test_y", False, {"device": "cpu"})
    golden.write(tmp_path, "net", OUTPUTS, MANIFEST)
    before = _listing(tmp_path)
    with pytest.raises(WriteError, match=r"net\.json: cannot write it: Input/output error"):
        fixture._write("net", {"random": np.ones(2)}, None)
    assert _listing(tmp_path) == {**before, ".net.lock": b""}
    assert sorted(golden.read(tmp_path, "net").outputs) == ["photo"]
