"""Gradient parity of torch layers and their Flax counterparts (`@parity_test(grads=True)`):
on each drawn example whose outputs agree, both sides' gradients of one loss (a seeded random
projection of the outputs) with respect to the input and every parameter, judged by their
error budget (both sides also in float64; pytest_parity.run.gradients).

The bugs a forward comparison cannot see are in tests/parity/test_gradient_bugs.py.
"""

from functools import partial

import pytest

from pytest_parity import parity_test
from pytest_parity.strategies import image_batches, sequence_batches, token_batches

# Gradients run with --zoo=all (the whole suite and CI): 7.5 s, the main job checks
# outputs
pytestmark = pytest.mark.zoo_all

torch = pytest.importorskip("torch")
nn = pytest.importorskip("flax.linen")
jax = pytest.importorskip("jax")

# bfloat16 too: its gradients are held to both sides' drifts (XLA's backward sums a strided
# convolution's bias gradient in bfloat16, 1.27x torch's element bound; pytest_parity.run.
# gradients LOW_PRECISION), and its loss to the budget in bfloat16.
gradient_case = partial(parity_test, dtypes=["float32", "bfloat16"], max_examples=8,
                        grads=True)


def _checked(result):
    gradients = result.worst_gradients
    assert gradients is not None and gradients.passed
    paths = {leaf.path for leaf in gradients.leaves}
    assert "loss" in paths
    return paths


@gradient_case(torch=lambda: torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
               flax=lambda: nn.Conv(8, (3, 3), strides=2, padding=((1, 1), (1, 1))),
               inputs=image_batches(channels=3))
def test_conv2d_strided(result):
    # the kernel's gradient is carried back through the mapping: torch's OIHW shape
    assert {"inputs", "params/weight", "params/bias"} <= _checked(result)
    kernel = next(leaf for leaf in result.worst_gradients.leaves if leaf.path == "params/weight")
    assert kernel.shape == (8, 3, 3, 3)


@gradient_case(torch=lambda: torch.nn.Linear(16, 8),
               flax=lambda: nn.Dense(8), inputs=sequence_batches(features=16))
def test_linear(result):
    assert {"inputs", "params/weight", "params/bias"} <= _checked(result)


@gradient_case(torch=lambda: torch.nn.LayerNorm(16), flax=lambda: nn.LayerNorm(epsilon=1e-5),
               inputs=sequence_batches(features=16))
def test_layer_norm(result):
    assert {"params/weight", "params/bias"} <= _checked(result)


@gradient_case(torch=lambda: torch.nn.Embedding(50, 8), flax=lambda: nn.Embed(50, 8),
               inputs=token_batches(vocab_size=50))
def test_embedding(result):
    paths = _checked(result)
    assert "inputs" not in paths  # token ids: no gradient
    assert "params/weight" in paths


@gradient_case(torch=lambda: torch.nn.GELU(), flax=lambda: partial(nn.gelu, approximate=False),
               inputs=image_batches(channels=3))
def test_gelu_function(result):
    assert _checked(result) == {"loss", "inputs"}


@gradient_case(torch=lambda: torch.nn.MaxPool2d(2), flax=lambda: partial(
    nn.max_pool, window_shape=(2, 2), strides=(2, 2)), inputs=image_batches(channels=3))
def test_max_pool(result):
    assert _checked(result) == {"loss", "inputs"}


@gradient_case(torch=lambda: torch.nn.Linear(16, 8),
               flax=lambda: pytest.importorskip("flax.nnx").Linear(
                   16, 8, rngs=pytest.importorskip("flax.nnx").Rngs(0)),
               inputs=sequence_batches(features=16))
def test_nnx_linear(result):
    # an NNX port's gradients come through its Linen interface, carried by the same mapping
    assert {"inputs", "params/weight", "params/bias"} <= _checked(result)
