"""Layer-level parity cases: torch layers against flax.linen layers with weights copied over.

These are the parity cases that exist before the zoo; `nox -s parity` runs them and prints
the report. Weights are copied by hand here (the Mapping tables replace that for models).
"""

import numpy as np
import pytest

from pytest_parity import assert_close
from pytest_parity.devices import jax_device, torch_device

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
nn = pytest.importorskip("flax.linen")

pytestmark = pytest.mark.parity


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)  # torch layers initialise their weights from its global generator


def _seeded(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _run_both(torch_module, flax_module, flax_variables, torch_input, flax_input, device):
    torch_module = torch_module.to(torch_device(device)).eval()
    with torch.no_grad():
        torch_out = torch_module(torch.from_numpy(torch_input).to(torch_device(device)))
    with jax.default_device(jax_device(device)):
        flax_out = jax.jit(flax_module.apply)(flax_variables, flax_input)
    return torch_out, flax_out


def test_conv2d(parity_device):
    torch_conv = torch.nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1)
    flax_conv = nn.Conv(16, (3, 3), strides=2, padding=((1, 1), (1, 1)))
    variables = {"params": {
        "kernel": torch_conv.weight.detach().numpy().transpose(2, 3, 1, 0),  # OIHW -> HWIO
        "bias": torch_conv.bias.detach().numpy(),
    }}
    images = _seeded((2, 3, 32, 32))
    torch_out, flax_out = _run_both(torch_conv, flax_conv, variables, images,
                                    images.transpose(0, 2, 3, 1), parity_device)
    assert_close(np.asarray(flax_out).transpose(0, 3, 1, 2), torch_out)


def test_linear(parity_device):
    torch_linear = torch.nn.Linear(64, 10)
    flax_dense = nn.Dense(10)
    variables = {"params": {
        "kernel": torch_linear.weight.detach().numpy().T,  # (out, in) -> (in, out)
        "bias": torch_linear.bias.detach().numpy(),
    }}
    features = _seeded((4, 64))
    torch_out, flax_out = _run_both(torch_linear, flax_dense, variables, features, features,
                                    parity_device)
    assert_close(flax_out, torch_out)


def test_layer_norm(parity_device):
    torch_norm = torch.nn.LayerNorm(32, eps=1e-6)
    with torch.no_grad():
        torch_norm.weight.copy_(torch.from_numpy(_seeded(32, seed=1)))
        torch_norm.bias.copy_(torch.from_numpy(_seeded(32, seed=2)))
    flax_norm = nn.LayerNorm(epsilon=1e-6)
    variables = {"params": {"scale": torch_norm.weight.detach().numpy(),
                            "bias": torch_norm.bias.detach().numpy()}}
    tokens = _seeded((2, 5, 32)) * 3 + 1
    torch_out, flax_out = _run_both(torch_norm, flax_norm, variables, tokens, tokens,
                                    parity_device)
    assert_close(flax_out, torch_out)


def test_gelu_exact(parity_device):
    values = np.linspace(-6, 6, 101, dtype=np.float32)
    torch_out = torch.nn.functional.gelu(torch.from_numpy(values).to(torch_device(parity_device)))
    with jax.default_device(jax_device(parity_device)):
        flax_out = nn.gelu(values, approximate=False)
    assert_close(flax_out, torch_out)
