"""Each side's non-smooth ops as the branches see them (pytest_parity.branches): what is
recorded, that a run pinned to its own choices computes exactly what the plain run does, and
the ops that are not kinks left alone. Each case here was a defect found in review."""

import numpy as np
import pytest

from pytest_parity.branches.jax_choices import Seen, pinned, recorded
from pytest_parity.branches.torch_choices import TorchChoices

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")


def _jax_pinned_to_itself(function, x):
    """(ops seen, plain gradient, gradient pinned to its own choices)."""
    seen = Seen()
    _, arrays = jax.jit(recorded(function, seen))(x)
    pins = [np.asarray(chosen) for chosen, _ in arrays]
    plain = jax.grad(lambda x: function(x).sum())(x)
    own = jax.grad(lambda x: pinned(function, seen)(x, pins)[0].sum())(x)
    return [op for _, op in seen.labels], np.asarray(plain), np.asarray(own)


def test_softplus_is_smooth_and_not_a_kink():
    # its custom derivative holds max(x, 0) + log1p(exp(-abs(x))): pinning the max alone
    # gave the gradient -0.5 at x = 1e-8 where it is 0.5
    ops, plain, own = _jax_pinned_to_itself(jax.nn.softplus, jnp.array([1e-8, -2.0, 3.0]))
    assert ops == []
    np.testing.assert_array_equal(plain, own)


def test_an_infinite_operand_does_not_make_the_pinned_run_nan():
    def masked_softmax(x):  # a causal LM's -inf mask
        return jax.nn.softmax(jnp.where(x > 0.5, x, -jnp.inf))

    ops, plain, own = _jax_pinned_to_itself(masked_softmax, jnp.array([0.7, 0.9, 0.1]))
    assert "select_n" in ops
    assert np.isfinite(own).all()  # it was nan everywhere
    np.testing.assert_array_equal(plain, own)


def test_a_clamp_with_literal_bounds_is_seen():
    ops, plain, own = _jax_pinned_to_itself(lambda x: jax.lax.clamp(-0.5, x, 1.0),
                                            jnp.array([-1.0, 0.2, 2.0]))
    assert ops == ["clamp"]  # it was AttributeError: 'float' object has no attribute 'astype'
    np.testing.assert_array_equal(plain, own)


def test_abs_is_a_kink_on_both_sides():
    ops, plain, own = _jax_pinned_to_itself(jnp.abs, jnp.array([-1.0, 2.0]))
    assert ops == ["abs"]
    np.testing.assert_array_equal(plain, own)
    x = torch.tensor([-1.0, 2.0])
    with TorchChoices(torch.nn.Identity()) as seen:
        torch.abs(x)
    assert [choice.op for choice in seen.choices] == ["abs"]


class InPlace(torch.nn.Module):
    def forward(self, x):
        y = x * 1.0
        torch.nn.functional.relu(y, inplace=True)  # its result used, not returned
        z = y - 1.0
        z.relu_()
        return y + z


class Relu6(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.relu6(x)


@pytest.mark.parametrize("model", [InPlace(), Relu6()], ids=["in place", "relu6 at 0"])
def test_a_torch_model_computes_the_same_with_its_choices_seen_and_pinned(model):
    # in place: the result is used, not returned (it was [-1, ...]: relu ran out of place);
    # relu6 at 0: torch's own derivative, 0 (it was 1: relu6 ran as a clamp)
    x = torch.tensor([-1.0, 0.0, 0.5, 3.0, 7.0], requires_grad=True)
    plain = model(x)
    (plain_grad,) = torch.autograd.grad(plain.sum(), x)
    with TorchChoices(model) as seen:
        watched = model(x)
    with TorchChoices(model, [choice.chosen for choice in seen.choices]):
        pinned_output = model(x)
    (pinned_grad,) = torch.autograd.grad(pinned_output.sum(), x)
    assert torch.equal(watched, plain) and torch.equal(pinned_output, plain)
    assert torch.equal(pinned_grad, plain_grad)


def test_torch_calls_by_keyword_and_max_pool_with_indices_are_seen():
    x = torch.randn(1, 1, 4, 4)
    pool = torch.nn.MaxPool2d(2, return_indices=True)
    with TorchChoices(pool) as seen:
        _, indices = pool(x)
        torch.where(x > 0, x, other=-x)  # it was TypeError: unexpected keyword 'other'
        torch.clamp(input=x, min=0.0)  # it was TypeError: missing x
    assert [choice.op for choice in seen.choices] == ["max_pool2d", "where", "clamp"]
    assert torch.equal(indices, torch.nn.functional.max_pool2d(x, 2, return_indices=True)[1])
