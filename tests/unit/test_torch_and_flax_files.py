"""torch and Flax files that numpy, safetensors or the mapping cannot take as they are: each is
written anyway (tied tensors) or refused as a [parity] error naming the file and the key."""

import numpy as np
import pytest

from pytest_parity.checkpoint import (
    checkpoint_from_flax,
    checkpoint_from_torch,
    convert_file,
    read_state_dict,
    read_variables,
    write_state_dict,
)
from pytest_parity.checkpoint.convert_file import read_key_list
from pytest_parity.cli import main
from pytest_parity.errors import CheckpointError
from tests.support.tinynet import TINYNET

torch = pytest.importorskip("torch")
pytest.importorskip("flax")


def _state():
    torch.manual_seed(0)
    return TINYNET.torch_model().state_dict()


@pytest.mark.parametrize(("make", "words"), [
    (lambda: torch.zeros(10, device="meta"), "a meta tensor: it has a shape but no values"),
    (lambda: torch.zeros(10).to_sparse(), "a sparse tensor (layout sparse_coo)"),
    (lambda: torch.zeros(10).to(torch.float8_e4m3fn), "dtype float8_e4m3fn"),
], ids=["meta", "sparse", "float8"])
def test_a_state_dict_in_memory_with_a_tensor_numpy_cannot_hold_names_the_key(make, words):
    state = {**_state(), "fc.bias": make()}
    with pytest.raises(CheckpointError) as error:
        checkpoint_from_torch(state, TINYNET)
    assert str(error.value).startswith(f"[parity] <memory>: 1 problem\n  - fc.bias: {words}")


def test_tied_tensors_are_written_to_safetensors_as_copies(tmp_path):
    shared = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    torch.save({"embed.weight": shared, "head.weight": shared, "row": shared[1]},
               tmp_path / "tied.pt")
    state = read_state_dict(tmp_path / "tied.pt")
    assert np.shares_memory(state["embed.weight"], state["head.weight"])  # tied, as torch loads
    convert_file(tmp_path / "tied.pt", tmp_path / "tied.safetensors")
    written = read_state_dict(tmp_path / "tied.safetensors")
    assert sorted(written) == ["embed.weight", "head.weight", "row"]
    for key, value in state.items():
        assert written[key].tobytes() == value.tobytes() and written[key].shape == value.shape
    path = write_state_dict(tmp_path / "direct.safetensors", state)
    assert sorted(read_state_dict(path)) == sorted(state)


class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 10)


def test_a_whole_model_says_to_save_its_state_dict_not_to_allow_globals(tmp_path):
    torch.save(Head(), tmp_path / "model.pt")
    with pytest.raises(CheckpointError) as error:
        read_state_dict(tmp_path / "model.pt")
    message = str(error.value)
    assert "this file holds a pickled model object" in message
    assert "save `model.state_dict()` instead (torch.save(model.state_dict(), path))" in message
    assert "safe_globals" not in message and "weights_only=False" not in message


def test_a_keys_list_that_is_not_utf8_is_named(tmp_path, capsys):
    keys = tmp_path / "keys.txt"
    keys.write_bytes(b"fc.bias\n\xff\xfeconv1.weight\n")
    with pytest.raises(CheckpointError, match=r"keys\.txt: 1 problem\n  - the --keys list is "
                                              r"not UTF-8 text \(byte 8\)"):
        read_key_list(keys)
    torch.save(_state(), tmp_path / "tiny.pt")
    assert main(["convert", str(tmp_path / "tiny.pt"), str(tmp_path / "out.pt"),
                 "--keys", str(keys)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"[parity] {keys}: ") and "Traceback" not in err
    assert not (tmp_path / "out.pt").exists()


def _variables():
    from pytest_parity.checkpoint import checkpoint_to_flax

    return checkpoint_to_flax(checkpoint_from_torch(_state(), TINYNET), TINYNET)


def test_flax_variables_name_the_file_they_came_from(tmp_path):
    variables = _variables()
    variables["params"]["fc"]["bias"] = np.zeros(3, np.float32)
    source = tmp_path / "tiny.msgpack"
    with pytest.raises(CheckpointError) as error:
        checkpoint_from_flax(variables, TINYNET, path=source)
    assert str(error.value).startswith(f"[parity] {source}: 1 problem\n  - fc/bias: shape (3,)")
    variables["params"]["fc"]["extra"] = np.zeros(1, np.float32)
    with pytest.raises(CheckpointError, match=r"tiny\.msgpack: 1 problem\n  - tinynet: 1 "
                                              "canonical paths have no rule: fc/extra"):
        checkpoint_from_flax(variables, TINYNET, path=source)


def test_a_msgpack_file_wrong_everywhere_lists_twenty_problems_and_a_count(tmp_path):
    from flax.serialization import msgpack_serialize

    path = tmp_path / "wrong.msgpack"
    path.write_bytes(msgpack_serialize({"params": {f"m{i:02}": {"w": f"text {i}"}
                                                   for i in range(25)}}))
    with pytest.raises(CheckpointError) as error:
        read_variables(path)
    assert error.value.problems[0] == "params/m00/w: a value of type str, not an array"
    assert len(error.value.problems) == 21 and error.value.problems[-1] == "... and 5 more"


def test_a_changed_tensor_byte_in_a_pt_file_is_caught_by_its_zip_checksum(tmp_path):
    """torch.load never checks the CRC-32 a zip-format .pt records: a flipped byte inside a
    tensor loaded as a wrong value, silently."""
    import zipfile

    import torch

    from pytest_parity.checkpoint.torch_files import read_state_dict
    from pytest_parity.errors import CheckpointError

    path = tmp_path / "weights.pt"
    torch.save({"w": torch.arange(1000, dtype=torch.float32)}, path)
    with zipfile.ZipFile(path) as archive:
        member = next(info for info in archive.infolist() if info.filename.endswith("data/0"))
    data = bytearray(path.read_bytes())
    start = member.header_offset + 30 + len(member.filename) + len(member.extra)
    data[start + 100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as error:
        read_state_dict(path)
    assert str(error.value) == (f"[parity] {path}: 1 problem\n  - weights/data/0: its CRC-32 "
                                "does not match its bytes; the file is damaged")


def test_a_pt_member_marked_as_a_directory_is_refused_not_read_as_zeros(tmp_path):
    """The fuzz found it: three bytes over a central-directory entry's attributes set the
    MS-DOS directory bit; every CRC still matched, and torch read that tensor as zeros."""
    import struct
    import zipfile

    import torch

    from pytest_parity.checkpoint.torch_files import read_state_dict
    from pytest_parity.errors import CheckpointError

    path = tmp_path / "weights.pt"
    torch.save({"w": torch.arange(1, 11, dtype=torch.float32)}, path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        names = [info.filename for info in archive.infolist()]
    entry = data.index(b"PK\x01\x02")  # the central directory's first entry
    target = next(name for name in names if name.endswith("data/0")).encode()
    while data[entry + 46:entry + 46 + len(target)] != target:  # this member's entry
        entry = data.index(b"PK\x01\x02", entry + 4)
    struct.pack_into("<I", data, entry + 38, 0x10)  # external attributes: a directory
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as error:
        read_state_dict(path)
    assert error.value.problems == [f"{target.decode()}: marked as a directory in the zip "
                                    "archive, so torch would read it as zeros; the file is "
                                    "damaged"]
