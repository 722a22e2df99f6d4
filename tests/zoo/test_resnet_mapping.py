"""torchvision ResNets -> canonical checkpoint -> torchvision, bit-exact, through the table."""

import numpy as np
import pytest

from models.resnet.mapping import resnet_mapping
from pytest_parity.arrays import to_numpy
from pytest_parity.checkpoint import Checkpoint, load, save

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def torchvision():
    from pytest_parity.torchvision_compat import import_torchvision

    return import_torchvision()


@pytest.mark.parametrize(("architecture", "n_values"),
                         [("resnet18", 11_689_512), ("resnet50", 25_557_032)])
def test_torch_to_canonical_to_torch_is_bit_exact(tmp_path, torchvision, architecture,
                                                  n_values):
    torch.manual_seed(0)
    model = getattr(torchvision.models, architecture)()
    state = {key: to_numpy(value) for key, value in model.state_dict().items()}
    mapping = resnet_mapping(architecture)

    arrays, layouts = mapping.torch_to_canonical(state)
    assert arrays["conv1/kernel"].shape == (7, 7, 3, 64)
    assert arrays["fc/kernel"].shape == (model.fc.in_features, 1000)
    n_params = sum(a.size for path, a in arrays.items()
                   if not path.endswith(("mean", "var", "num_batches_tracked")))
    assert n_params == n_values

    path = save(tmp_path / f"{architecture}.h5", Checkpoint(architecture, arrays, layouts))
    restored = mapping.canonical_to_torch(load(path, architecture=architecture).arrays)
    assert restored.keys() == state.keys()
    for key, value in state.items():
        assert restored[key].dtype == value.dtype and np.array_equal(restored[key], value), key
    model.load_state_dict({key: torch.from_numpy(value) for key, value in restored.items()})
