"""A registered pair small enough for error-path tests: conv, BatchNorm, linear head."""

from __future__ import annotations

from pytest_parity.mapping import Mapping, Rule
from pytest_parity.mapping.layer_rules import batch_norm_rules
from pytest_parity.mapping.transforms import OIHW_TO_HWIO, OUT_IN_TO_IN_OUT
from pytest_parity.registry import Pair, register

MAPPING = Mapping("tinynet", (
    Rule("conv1/kernel", "conv1.weight", "HWIO", transform=OIHW_TO_HWIO),
    *batch_norm_rules("bn1", "bn1"),
    Rule("fc/kernel", "fc.weight", "IO", transform=OUT_IN_TO_IN_OUT),
    Rule("fc/bias", "fc.bias", "O"),
))


def torch_tinynet():
    import torch

    class TinyNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(4)
            self.fc = torch.nn.Linear(4, 10)

        def forward(self, x):
            return self.fc(torch.relu(self.bn1(self.conv1(x))).mean(dim=(2, 3)))

    return TinyNet()


def flax_tinynet(epsilon=1e-5, momentum=0.9):
    """The Flax port; `epsilon` other than torch's 1e-5 makes it a port with a bug, `momentum`
    other than 0.9 (torch's 0.1) one whose training differs."""
    import flax.linen as nn
    import jax.numpy as jnp

    class TinyNet(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, name="conv1")(x)
            x = nn.relu(nn.BatchNorm(use_running_average=True, momentum=momentum,
                                     epsilon=epsilon, name="bn1")(x))
            return nn.Dense(10, name="fc")(jnp.mean(x, axis=(1, 2)))

    return TinyNet()


def nnx_tinynet(epsilon=1e-5):
    """The same port in Flax NNX (the same variable tree, so the same mapping serves it)."""
    import jax.numpy as jnp
    from flax import nnx

    class TinyNet(nnx.Module):
        def __init__(self, rngs):
            self.conv1 = nnx.Conv(3, 4, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                                  rngs=rngs)
            self.bn1 = nnx.BatchNorm(4, use_running_average=True, momentum=0.9,
                                     epsilon=epsilon, rngs=rngs)
            self.fc = nnx.Linear(4, 10, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.bn1(self.conv1(x)))
            return self.fc(jnp.mean(x, axis=(1, 2)))

    return TinyNet(nnx.Rngs(0))


def tinynet_golden():
    """Outputs of the torch TinyNet (seed 0) on a seeded batch, as a golden factory returns."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    model = torch_tinynet().eval()
    images = np.random.RandomState(1).normal(0, 1, (2, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(images)).numpy()
    return {"random": logits}, {"source": "tests.support.tinynet", "device": "cpu",
                                "dtype": "float32", "checkpoint": {"digest": "0" * 64},
                                "outputs": {"random": {"input": "RandomState(1) (2, 3, 8, 8)"}}}


TINYNET = register(Pair("tinynet", torch_tinynet, flax_tinynet, MAPPING, (1, 3, 8, 8),
                        golden=tinynet_golden))
TINYNET_NNX = register(Pair("tinynet_nnx", torch_tinynet, nnx_tinynet, MAPPING, (1, 3, 8, 8)))
