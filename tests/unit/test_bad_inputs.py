"""Every kind of bad input, as one table, through `parity convert`: each is reported as the
plugin's own error naming the file and the key, with exit status 2 and no traceback; nothing
is written and no pickled code runs."""

import pickle

import h5py
import numpy as np
import pytest

from pytest_parity.checkpoint import save
from pytest_parity.cli import main
from tests.support.tinynet import TINYNET

torch = pytest.importorskip("torch")
pytest.importorskip("flax")


class RunsCode:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').touch()",))


def _torch_state():
    torch.manual_seed(0)
    return TINYNET.torch_model().state_dict()


def _canonical(tmp_path, edit=None):
    from pytest_parity.checkpoint import checkpoint_from_torch

    checkpoint = checkpoint_from_torch(_torch_state(), TINYNET)
    if edit:
        edit(checkpoint)
    return save(tmp_path / "tiny.h5", checkpoint)


def _damaged_h5(damage):
    def make(tmp_path):
        path = _canonical(tmp_path)
        damage(path)
        return path
    return make


def _h5_attrs(**attrs):
    def damage(path):
        with h5py.File(path, "a") as h5:
            h5.attrs.update(attrs)
    return _damaged_h5(damage)


def _h5_edit(operation):
    def damage(path):
        with h5py.File(path, "a") as h5:
            operation(h5)
    return _damaged_h5(damage)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _pt(content, name="tiny.pt"):
    def make(tmp_path):
        path = tmp_path / name
        torch.save(content() if callable(content) else content, path)
        return path
    return make


def _state_edit(edit):
    def content():
        state = dict(_torch_state())
        edit(state)
        return state
    return _pt(content)


def _bytes(data, name):
    def make(tmp_path):
        path = tmp_path / name
        path.write_bytes(data)
        return path
    return make


def _then(make, after):
    def combined(tmp_path):
        path = make(tmp_path)
        after(path)
        return path
    return combined


def _drop(name):
    def edit(checkpoint):
        del checkpoint.arrays[name], checkpoint.layouts[name]
    return edit


def _transpose(name):
    def edit(checkpoint):
        checkpoint.arrays[name] = np.ascontiguousarray(checkpoint.arrays[name].T)
    return edit


def _variables():
    from pytest_parity.checkpoint import checkpoint_from_torch, checkpoint_to_flax

    return checkpoint_to_flax(checkpoint_from_torch(_torch_state(), TINYNET), TINYNET)


def _msgpack(edit):
    """Tinynet's Flax variables as .msgpack, `edit`ed first (it may return a new tree)."""
    def make(tmp_path):
        from flax.serialization import msgpack_serialize

        variables = _variables()
        variables = edit(variables) or variables
        path = tmp_path / "tiny.msgpack"
        path.write_bytes(msgpack_serialize(variables))
        return path
    return make


def _set_leaf(value, collection="params", module="fc", name="bias"):
    def edit(variables):
        variables[collection][module][name] = value
    return edit


def _nested(depth):
    def edit(variables):
        node = np.zeros(1, np.float32)
        for _ in range(depth):
            node = {"a": node}
        variables["params"]["deep"] = node
    return edit


def _pt_tensor(make_tensor, name="tiny.pt"):
    return _state_edit(lambda state: state.update({"fc.bias": make_tensor()})) \
        if name == "tiny.pt" else _pt(lambda: {"fc.bias": make_tensor()}, name)


def _safetensors_tensor(make_tensor):
    def make(tmp_path):
        from safetensors.torch import save_file

        path = tmp_path / "tiny.safetensors"
        save_file({"fc.bias": make_tensor()}, str(path))
        return path
    return make


class TinyHolder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 10)


# (id, make the source file, convert to, extra arguments, expected words of the message)
CASES = [
    ("h5-truncated", _then(_damaged_h5(lambda p: None), _truncate), "out.npz", [],
     "not a readable HDF5 file"),
    ("h5-not-hdf5", _bytes(b"not an HDF5 file\n" * 10, "tiny.h5"), "out.npz", [],
     "not a readable HDF5 file"),
    ("h5-pickle-with-code", _bytes(pickle.dumps(RunsCode()), "tiny.h5"), "out.npz", [],
     "not a readable HDF5 file"),
    ("h5-other-format", _h5_attrs(format="something-else"), "out.npz", [],
     "not a pytest-parity-checkpoint file"),
    ("h5-format-version", _h5_attrs(format_version=99), "out.npz", [],
     "format version 99 is not supported"),
    ("h5-wrong-root", _h5_edit(lambda h5: h5.move("tinynet", "other")), "out.npz", [],
     "the root must hold one group named 'tinynet', found ['other']"),
    ("h5-edited-value", _h5_edit(lambda h5: h5["tinynet/bn1/mean"].__setitem__(0, 42.0)),
     "out.npz", [], "content digest"),
    ("h5-no-manifest", _h5_edit(lambda h5: h5.attrs.__delitem__("tensors")), "out.npz", [],
     "the root attribute 'tensors' (each tensor's layout and dtype) is missing"),
    ("h5-undeclared-tensor", _h5_edit(lambda h5: h5.create_dataset("tinynet/extra/w", data=[1])),
     "out.npz", [], "extra/w: a tensor that the root manifest does not declare"),
    ("h5-deleted-tensor", _h5_edit(lambda h5: h5.__delitem__("tinynet/bn1/mean")), "out.npz",
     [], "bn1/mean: declared in the root manifest but not in the file"),
    ("h5-missing-file", lambda tmp_path: tmp_path / "absent.h5", "out.npz", [], "no such file"),
    ("h5-missing-key-for-flax", lambda tmp_path: _canonical(tmp_path, _drop("fc/bias")),
     "out.msgpack", [], "fc/bias: missing (expected (10,) float32, layout O)"),
    ("h5-misshaped-for-flax", lambda tmp_path: _canonical(tmp_path, _transpose("fc/kernel")),
     "out.msgpack", [], "fc/kernel: shape (10, 4) layout IO where (4, 10) layout IO was"),
    ("h5-misshaped-for-torch", lambda tmp_path: _canonical(tmp_path, _transpose("fc/kernel")),
     "out.pt", [], "fc.weight: shape (4, 10) where (10, 4) was expected"),
    ("pt-pickle-with-code", _pt(lambda: {"fc.bias": torch.zeros(10), "x": RunsCode()}),
     "out.h5", ["--arch", "tinynet"], "refused to unpickle"),
    ("pt-truncated", _then(_pt(_torch_state), _truncate), "out.h5", ["--arch", "tinynet"],
     "not a readable torch file"),
    ("pt-not-a-state-dict", _pt(lambda: [torch.zeros(2)]), "out.h5", ["--arch", "tinynet"],
     "holds a list, not a state dict"),
    ("safetensors-garbage", _bytes(b"\x10" * 64, "tiny.safetensors"), "out.h5",
     ["--arch", "tinynet"], "not a readable torch file"),
    ("pt-missing-key", _state_edit(lambda state: state.pop("fc.bias")), "out.h5",
     ["--arch", "tinynet"], "fc.bias: missing (expected (10,) float32)"),
    ("pt-extra-key", _state_edit(lambda state: state.update(extra=torch.zeros(3))), "out.h5",
     ["--arch", "tinynet"], "extra: unexpected key (shape (3,))"),
    ("pt-misshaped-key", _state_edit(lambda state: state.update(
        {"conv1.weight": torch.zeros(4, 3, 5, 5)})), "out.h5", ["--arch", "tinynet"],
     "conv1.weight: shape (4, 3, 5, 5) where (4, 3, 3, 3) was expected"),
    ("pt-without-arch", _pt(_torch_state), "out.h5", [], "pass --arch NAME"),
    ("pt-sparse-coo", _pt_tensor(lambda: torch.zeros(10).to_sparse()), "out.h5",
     ["--arch", "tinynet"], "fc.bias: a sparse tensor (layout sparse_coo), which numpy cannot "
     "hold; save tensor.to_dense() instead"),
    ("pt-sparse-csr", _pt_tensor(lambda: torch.eye(10).to_sparse_csr()), "out.pt", [],
     "fc.bias: a sparse tensor (layout sparse_csr)"),
    ("pt-quantized", _pt_tensor(lambda: torch.quantize_per_tensor(torch.zeros(10), 0.1, 0,
                                                                   torch.qint8)), "out.h5",
     ["--arch", "tinynet"], "fc.bias: a quantized tensor (qint8), which numpy cannot hold; "
     "save tensor.dequantize() instead"),
    ("pt-float8", _pt_tensor(lambda: torch.zeros(10).to(torch.float8_e4m3fn)), "out.h5",
     ["--arch", "tinynet"], "fc.bias: dtype float8_e4m3fn, which numpy cannot hold"),
    ("safetensors-float8", _safetensors_tensor(lambda: torch.zeros(10).to(torch.float8_e5m2)),
     "out.pt", [], "fc.bias: dtype float8_e5m2, which numpy cannot hold"),
    ("pt-meta", _pt_tensor(lambda: torch.zeros(10, device="meta")), "out.h5",
     ["--arch", "tinynet"], "fc.bias: a meta tensor: it has a shape but no values"),
    ("pt-nested", _pt_tensor(lambda: torch.nested.nested_tensor([torch.zeros(2),
                                                                 torch.zeros(3)])),
     "out.pt", [], "fc.bias: a nested tensor, which numpy cannot hold"),
    ("pt-whole-model", _pt(TinyHolder), "out.h5", ["--arch", "tinynet"],
     "refused to unpickle: this file holds a pickled model object (test_bad_inputs.TinyHolder);"
     " save `model.state_dict()` instead (torch.save(model.state_dict(), path))"),
    ("pt-model-in-a-dict", _pt(lambda: {"model": torch.nn.Linear(4, 10), "epoch": 3}),
     "out.h5", ["--arch", "tinynet"], "this file holds a pickled model object "
     "(torch.nn.modules.linear.Linear); save `model.state_dict()` instead"),
    ("msgpack-misshaped", _msgpack(_set_leaf(np.zeros(3, np.float32))), "out.h5",
     ["--arch", "tinynet"], "fc/bias: shape (3,) layout O where (10,) layout O was expected"),
    ("msgpack-unknown-variable", _msgpack(_set_leaf(np.zeros(3, np.float32), name="extra")),
     "out.h5", ["--arch", "tinynet"], "tinynet: 1 canonical paths have no rule: fc/extra"),
    ("msgpack-leaf-not-an-array", _msgpack(_set_leaf("x")), "out.h5", ["--arch", "tinynet"],
     "params/fc/bias: a value of type str, not an array"),
    ("msgpack-dict-for-an-array", _msgpack(_set_leaf({"w": np.zeros(10, np.float32)})),
     "out.h5", ["--arch", "tinynet"], "1 canonical paths have no rule: fc/bias/w"),
    ("msgpack-array-for-a-dict", _msgpack(lambda v: v["params"].update(fc=np.zeros(10))),
     "out.h5", ["--arch", "tinynet"], "1 canonical paths have no rule: fc"),
    ("msgpack-array-for-a-collection", _msgpack(lambda v: v.update(params=np.zeros(10))),
     "out.h5", ["--arch", "tinynet"], "params: a ndarray where a collection of variables"),
    ("msgpack-in-two-collections", _msgpack(lambda v: v.update(
        other={"fc": {"bias": np.zeros(10, np.float32)}})), "out.h5", ["--arch", "tinynet"],
     "fc/bias (in both 'other' and 'params')"),
    ("msgpack-number-as-name", _bytes(b"\x81\x07\x81\xa1x\x01", "tiny.msgpack"), "out.h5",
     ["--arch", "tinynet"], "7: a name must be a non-empty string without '/'"),
    ("msgpack-nested-deep", _msgpack(_nested(900)), "out.h5", ["--arch", "tinynet"],
     "nested more than 64 levels deep"),
    ("msgpack-not-a-dict", _bytes(b"\x92\x01\x02", "tiny.msgpack"), "out.h5",
     ["--arch", "tinynet"], "holds a list, not Flax variables"),
    ("msgpack-garbage", _bytes(b"\xc1" * 8, "tiny.msgpack"), "out.h5", ["--arch", "tinynet"],
     "not a Flax msgpack file"),
]


@pytest.mark.parametrize(("make", "target", "extra", "message"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_named_and_nothing_is_written(tmp_path, monkeypatch, capsys, make, target,
                                                   extra, message):
    monkeypatch.chdir(tmp_path)
    source = make(tmp_path)
    status = main(["convert", str(source), str(tmp_path / target), *extra])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith(f"[parity] {source}: ")
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert not (tmp_path / target).exists()
    assert not (tmp_path / "PWNED").exists()


def test_more_problems_are_listed_together(tmp_path, capsys):
    def edit(state):
        state.pop("fc.bias")
        state["conv1.weight"] = torch.zeros(1)
        state["extra"] = torch.zeros(1)

    source = _state_edit(edit)(tmp_path)
    assert main(["convert", str(source), str(tmp_path / "out.h5"), "--arch", "tinynet"]) == 2
    assert "3 problems" in capsys.readouterr().err


def test_unknown_architecture_lists_the_registered_ones(tmp_path, capsys):
    source = _pt(_torch_state)(tmp_path)
    assert main(["convert", str(source), str(tmp_path / "out.h5"), "--arch", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "unknown architecture 'nosuch'" in err and "tinynet" in err


def test_listed_keys_missing_from_the_source_are_named(tmp_path, capsys):
    source = _canonical(tmp_path)
    keys = tmp_path / "keys.txt"
    keys.write_text("fc/bias [10] float32\n# a comment\nfc/nothing\n")
    assert main(["convert", str(source), str(tmp_path / "out.json"), "--keys", str(keys)]) == 2
    assert "fc/nothing: listed in --keys but not in the file" in capsys.readouterr().err
