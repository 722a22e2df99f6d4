"""What a CLI user meets on a wrong kind of file or a disk that refuses: the fix, no traceback."""

import os

import pytest

from pytest_parity.cli import main


@pytest.mark.parametrize("verb", ["inspect", "diff"])
@pytest.mark.parametrize("name", ["model.pt", "model.safetensors", "variables.msgpack"])
def test_a_framework_file_is_told_to_convert_first(tmp_path, capsys, verb, name):
    """`parity inspect model.pt` said 'not a readable HDF5 file' and nothing more."""
    path = tmp_path / name
    path.write_bytes(b"\x80\x02}q\x00.")
    assert main([verb, str(path)] + ([str(path)] if verb == "diff" else [])) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"[parity] {path}: `parity {verb}` reads canonical .h5 checkpoints, "
                          f"not {path.suffix} files; convert it first: parity convert {path} "
                          f"{path.with_suffix('.h5')} --arch NAME")
    assert "Traceback" not in err


def test_a_disk_that_refuses_is_a_parity_error_not_a_traceback(monkeypatch, capsys):
    import errno

    def full(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "out.h5")

    monkeypatch.setattr("pytest_parity.cli._canonical", full)
    assert main(["inspect", "in.h5"]) == 2
    assert capsys.readouterr().err == "[parity] out.h5: No space left on device\n"
