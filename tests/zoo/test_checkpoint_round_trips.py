"""torch -> canonical -> torch and Flax -> canonical -> Flax are bit-exact for the zoo's
ResNet-50 and ViT-B/16, through the API and through `parity convert`."""

import numpy as np
import pytest

from models.registry import PARAM_COUNTS
from pytest_parity import registry
from pytest_parity.arrays import to_numpy
from pytest_parity.checkpoint import load, save
from pytest_parity.cli import main
from pytest_parity.mapping import flatten, unflatten

torch = pytest.importorskip("torch")
pytest.importorskip("flax")

ROUND_TRIPPED = ["resnet50", "vit_b_16"]


@pytest.fixture(scope="module", params=ROUND_TRIPPED)
def pair(request):
    return registry.get(request.param)


@pytest.fixture(scope="module")
def torch_state(pair):
    torch.manual_seed(0)
    return {key: to_numpy(value) for key, value in pair.torch_model().state_dict().items()}


@pytest.fixture(scope="module")
def flax_variables(pair):
    """Random values in every variable the Flax module declares (its eval_shape structure)."""
    from pytest_parity.checkpoint.convert import flax_spec

    rng = np.random.default_rng(0)
    return unflatten({f"{pair.mapping.rule_for(path).collection}/{path}":
                      rng.standard_normal(spec.shape).astype(spec.dtype)
                      for path, spec in flax_spec(pair).items()})


def assert_same_arrays(actual, expected):
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype, key
        assert actual[key].shape == value.shape, key
        assert np.array_equal(actual[key], value), key


def test_torch_to_canonical_to_torch_is_bit_exact(tmp_path, pair, torch_state):
    from pytest_parity.checkpoint import checkpoint_from_torch, checkpoint_to_torch

    checkpoint = checkpoint_from_torch(torch_state, pair, source="torchvision")
    n_params = sum(array.size for path, array in checkpoint.arrays.items()
                   if pair.mapping.rule_for(path).collection == "params")
    assert n_params == PARAM_COUNTS[pair.name]

    path = save(tmp_path / f"{pair.name}.h5", checkpoint)
    restored = checkpoint_to_torch(load(path, architecture=pair.name), pair, path)
    assert_same_arrays(restored, torch_state)
    model = pair.torch_model()
    model.load_state_dict({key: torch.from_numpy(value) for key, value in restored.items()})


def test_flax_to_canonical_to_flax_is_bit_exact(tmp_path, pair, flax_variables):
    from pytest_parity.checkpoint import checkpoint_from_flax, checkpoint_to_flax

    path = save(tmp_path / f"{pair.name}.h5", checkpoint_from_flax(flax_variables, pair))
    restored = checkpoint_to_flax(load(path, architecture=pair.name), pair, path)
    assert_same_arrays(flatten(restored), flatten(flax_variables))


def test_torch_round_trip_through_the_cli(tmp_path, pair, torch_state):
    from pytest_parity.checkpoint import read_state_dict, write_state_dict

    write_state_dict(tmp_path / "a.pt", torch_state)
    steps = [["a.pt", "a.h5", "--arch", pair.name], ["a.h5", "b.safetensors"],
             ["b.safetensors", "b.h5", "--arch", pair.name], ["b.h5", "c.pt"]]
    for source, target, *extra in steps:
        assert main(["convert", str(tmp_path / source), str(tmp_path / target), *extra]) == 0
    assert main(["diff", str(tmp_path / "a.h5"), str(tmp_path / "b.h5")]) == 0
    assert_same_arrays(read_state_dict(tmp_path / "c.pt"), torch_state)


def test_flax_round_trip_through_the_cli(tmp_path, pair, flax_variables):
    from pytest_parity.checkpoint import read_variables, write_variables

    write_variables(tmp_path / "a.msgpack", flax_variables)
    assert main(["convert", str(tmp_path / "a.msgpack"), str(tmp_path / "a.h5"),
                 "--arch", pair.name]) == 0
    assert main(["convert", str(tmp_path / "a.h5"), str(tmp_path / "b.msgpack")]) == 0
    assert_same_arrays(flatten(read_variables(tmp_path / "b.msgpack")), flatten(flax_variables))
