"""Every write: a [parity] error naming the file, nothing half-written, no temporary left."""

import errno
import os
import re
from pathlib import Path

import pytest

from pytest_parity import atomic
from pytest_parity.atomic import WriteError, write_atomically, write_together
from pytest_parity.errors import PREFIX, CheckpointError
from pytest_parity.report import write_json


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root with its bytes (None for a directory)."""
    return {str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
            for path in sorted(root.rglob("*"))}


def _directory_in_place(root: Path) -> Path:
    (root / "out.json").mkdir()
    return root / "out.json"


def _file_as_parent(root: Path) -> Path:
    (root / "plain").write_text("a file")
    return root / "plain" / "out.json"


def _file_as_ancestor(root: Path) -> Path:
    (root / "plain").write_text("a file")
    return root / "plain" / "deeper" / "out.json"


def _overlong_name(root: Path) -> Path:
    return root / ("n" * 300 + ".json")


BAD_DESTINATIONS = {
    "a directory in the file's place": (_directory_in_place, "a directory is in its place"),
    "the parent is a file": (_file_as_parent, "plain is a file, not a directory"),
    "an ancestor is a file": (_file_as_ancestor, "plain is a file, not a directory"),
    "a name over 255 bytes": (_overlong_name, "its name is too long (305 bytes"),
}


@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "no-clobber"])
@pytest.mark.parametrize("make", list(BAD_DESTINATIONS), ids=list(BAD_DESTINATIONS))
def test_a_bad_destination_is_a_clean_error_and_changes_nothing(tmp_path, make, overwrite):
    build, reason = BAD_DESTINATIONS[make]
    path = build(tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(WriteError) as raised:
        write_atomically(path, lambda temporary: temporary.write_text("{}"), overwrite=overwrite)
    message = str(raised.value)
    assert message.startswith(f"{PREFIX} {path}: cannot write it: ")
    assert reason in message
    assert _tree(tmp_path) == before


def test_an_unwritable_directory_is_a_clean_error(tmp_path, monkeypatch):
    def refused(**kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(kwargs["dir"]))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refused)
    with pytest.raises(WriteError, match=re.escape(f"out.json: cannot write it: permission "
                                                   f"denied in {tmp_path}")):
        write_atomically(tmp_path / "out.json", lambda temporary: temporary.write_text("{}"))
    assert _tree(tmp_path) == {}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_a_read_only_directory_is_a_clean_error(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(WriteError, match="permission denied"):
            write_atomically(tmp_path / "out.json", lambda temporary: temporary.write_text("{}"))
    finally:
        tmp_path.chmod(0o700)
    assert _tree(tmp_path) == {}


def test_a_long_name_that_the_file_system_allows_is_written(tmp_path):
    path = tmp_path / ("n" * 250 + ".json")  # 255 bytes: its temporary's name must be shorter
    write_atomically(path, lambda temporary: temporary.write_text("{}"))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_writer_that_fails_leaves_no_temporary(tmp_path):
    def full_disk(temporary):
        temporary.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError, match=r"out\.json: cannot write it: No space left on device"):
        write_atomically(tmp_path / "out.json", full_disk)
    assert _tree(tmp_path) == {}


def test_an_existing_file_is_still_a_checkpoint_error(tmp_path):
    (tmp_path / "out.json").write_text("old")
    with pytest.raises(CheckpointError, match="the file exists; pass overwrite=True"):
        write_atomically(tmp_path / "out.json", lambda temporary: temporary.write_text("new"))
    assert (tmp_path / "out.json").read_text() == "old"


def _failing_second_move(monkeypatch, failing: Path):
    move = atomic._move

    def fail_on(temporary, path, overwrite):
        if path == failing:
            raise WriteError(path, "the disk went away")
        move(temporary, path, overwrite)

    monkeypatch.setattr(atomic, "_move", fail_on)


@pytest.mark.parametrize("existed", [True, False], ids=["old-pair", "no-pair"])
def test_files_written_together_are_all_put_back_when_one_fails(tmp_path, monkeypatch, existed):
    first, second = tmp_path / "a.npz", tmp_path / "a.json"
    if existed:
        first.write_text("old a")
        second.write_text("old b")
    before = _tree(tmp_path)
    _failing_second_move(monkeypatch, second)
    with pytest.raises(WriteError, match=r"a\.json: cannot write it: the disk went away"):
        write_together([(first, lambda t: t.write_text("new a")),
                        (second, lambda t: t.write_text("new b"))], overwrite=True)
    assert _tree(tmp_path) == before  # no new file, no temporary, no backup


def test_files_written_together_check_every_destination_first(tmp_path):
    (tmp_path / "a.json").mkdir()
    with pytest.raises(WriteError, match=r"a\.json: cannot write it: a directory is in its place"):
        write_together([(tmp_path / "a.npz", lambda t: t.write_text("new a")),
                        (tmp_path / "a.json", lambda t: t.write_text("new b"))], overwrite=True)
    assert _tree(tmp_path) == {"a.json": None}


def test_a_report_to_a_directory_is_a_clean_error(tmp_path):
    with pytest.raises(WriteError) as raised:
        write_json(tmp_path, [])
    assert str(raised.value) == (f"{PREFIX} {tmp_path}: cannot write it: a directory is in "
                                 "its place")
    assert _tree(tmp_path) == {}
