"""The loss-goes-down helper (issue 18): a few steps on one fixed batch, either side."""

import numpy as np
import pytest

from pytest_parity.compare import records
from pytest_parity.errors import ParityError
from pytest_parity.train import assert_loss_decreases

torch = pytest.importorskip("torch")
nn = pytest.importorskip("flax.linen")
jax = pytest.importorskip("jax")

BATCH = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)


class Detached(torch.nn.Module):
    """Its output leaves the graph: no parameter gets a gradient."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.linear(x).detach()


class Stopped(nn.Module):
    @nn.compact
    def __call__(self, x):
        return jax.lax.stop_gradient(nn.Dense(3)(x))


def _flax(module):
    return module, module.init(jax.random.key(0), BATCH)


def test_a_torch_model_lowers_its_loss_and_the_losses_are_recorded():
    torch.manual_seed(0)
    with records.collecting() as found:
        losses = assert_loss_decreases(torch.nn.Linear(6, 3), BATCH, steps=4)
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert found[0]["kind"] == "loss_down" and found[0]["losses"] == losses
    assert found[0]["passed"] and found[0]["margin"] < 1


def test_a_flax_model_lowers_its_loss_and_keeps_its_variables():
    module, variables = _flax(nn.Dense(3))
    before = jax.tree_util.tree_map(np.asarray, variables)
    losses = assert_loss_decreases(module, BATCH, variables=variables,
                                   loss=lambda out: ((out - 1.0) ** 2).mean())
    assert losses[-1] < losses[0]
    jax.tree_util.tree_map(np.testing.assert_array_equal, before, variables)


@pytest.mark.parametrize("side", ["torch", "flax"])
def test_a_model_whose_parameters_get_no_gradient_fails(side):
    model, variables = (Detached(), None) if side == "torch" else _flax(Stopped())
    with records.collecting() as found, pytest.raises(AssertionError) as failure:
        assert_loss_decreases(model, BATCH, variables=variables)
    assert "the loss did not go down in 5 steps" in str(failure.value)
    assert "No parameter got a gradient" in str(failure.value)
    assert found[0]["passed"] is False and found[0]["margin"] >= 1


def test_the_same_model_with_its_gradient_passes():
    """The injection (a detached output) is what fails the test above."""
    torch.manual_seed(0)
    model = Detached()
    model.forward = lambda x: model.linear(x)
    assert_loss_decreases(model, BATCH)


def test_a_flax_module_without_variables_is_a_clear_error():
    with pytest.raises(ParityError, match=r"\[parity\] Dense: a Flax module needs its variables="):
        assert_loss_decreases(nn.Dense(3), BATCH)
