import ml_dtypes
import numpy as np
import pytest

from pytest_parity.checkpoint import read_state_dict, write_state_dict
from pytest_parity.errors import CheckpointError

torch = pytest.importorskip("torch")

STATE = {
    "scalar": np.array(7, np.int64),
    "empty": np.zeros((0, 3), np.float32),
    "half": np.array([1.5, -2.0], np.float16),
    "brain": np.array([[0.5, -0.25, 3.0]], ml_dtypes.bfloat16),
    "weight": np.arange(6, dtype=np.float64).reshape(2, 3),
}


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_state_dicts_round_trip_exactly_with_shapes_and_dtypes(tmp_path, suffix):
    path = write_state_dict(tmp_path / f"state{suffix}", STATE)
    restored = read_state_dict(path)
    assert sorted(restored) == sorted(STATE)
    for key, value in STATE.items():
        assert restored[key].shape == value.shape, key
        assert restored[key].dtype == value.dtype, key
        assert restored[key].tobytes() == value.tobytes(), key


def test_a_wrapped_state_dict_is_unwrapped(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, tmp_path / "ckpt.pt")
    assert list(read_state_dict(tmp_path / "ckpt.pt")) == ["w"]


def test_unknown_suffix_is_refused_and_an_existing_file_kept(tmp_path):
    with pytest.raises(CheckpointError, match=r"unsupported suffix '\.npy'"):
        write_state_dict(tmp_path / "state.npy", STATE)
    path = write_state_dict(tmp_path / "state.pt", STATE)
    with pytest.raises(CheckpointError, match="the file exists"):
        write_state_dict(path, {"other": np.zeros(1)})
    assert sorted(read_state_dict(path)) == sorted(STATE)
