"""Bugs only gradients show (issue 18): each port computes the same outputs as torch, so the
forward comparison passes, and the gradient comparison fails, naming what differs. Each test
checks both: the injection leaves the forward verdict alone and changes the gradients'.
"""

import pytest

from pytest_parity.run import check_parity
from pytest_parity.strategies import image_batches, sequence_batches

torch = pytest.importorskip("torch")
nn = pytest.importorskip("flax.linen")
jax = pytest.importorskip("jax")

IMAGES = image_batches(channels=4, min_size=4, max_size=8)


class TorchResidualNet(torch.nn.Module):
    """A stem convolution, then one residual block: relu(conv2(relu(conv1(x))) + x)."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.conv1 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        x = self.stem(x)
        return torch.relu(self.conv2(torch.relu(self.conv1(x))) + x)


class FlaxResidualNet(nn.Module):
    stop_shortcut: bool = False

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3), padding=1, name="stem")(x)
        y = nn.Conv(4, (3, 3), padding=1, name="conv2")(
            nn.relu(nn.Conv(4, (3, 3), padding=1, name="conv1")(x)))
        shortcut = jax.lax.stop_gradient(x) if self.stop_shortcut else x
        return nn.relu(y + shortcut)


def _check(flax, grads, **options):
    return check_parity(torch=TorchResidualNet, flax=flax, inputs=IMAGES, max_examples=6,
                        grads=grads, **options)


def test_a_correct_residual_port_passes_gradient_parity():
    result = _check(FlaxResidualNet, grads=True)
    assert result.worst_gradients.passed
    assert {"params/stem.weight", "params/conv1.weight", "inputs"} <= {
        leaf.path for leaf in result.worst_gradients.leaves}


def test_a_stop_gradient_on_the_residual_branch_fails_the_gradients_only():
    def stopped():
        return FlaxResidualNet(stop_shortcut=True)

    assert _check(stopped, grads=False).worst.passed  # the forward cannot see it
    with pytest.raises(AssertionError) as failure:
        _check(stopped, grads=True)
    text = str(failure.value)
    assert "gradients/params/stem.weight" in text and "gradients/inputs" in text
    assert "params/conv1.weight: values" not in text  # the block's own gradients agree
    assert "stem.weight  (module stem; Flax params/stem/kernel)" in text
    assert "the backward pass parts ways between conv1 and stem" in text


def _cross_entropy_of_class_0(reduce):
    """-log softmax(logits)[0], reduced over the batch by torch's `reduce` ('mean', 'sum')."""
    def torch_loss(logits):
        losses = torch.logsumexp(logits, -1) - logits[:, 0]
        return getattr(losses, reduce)()

    def flax_loss(logits):
        losses = jax.nn.logsumexp(logits, -1) - logits[:, 0]
        return getattr(losses, reduce)()

    return torch_loss, flax_loss


LINEAR = {"torch": lambda: torch.nn.Linear(8, 5), "flax": lambda: nn.Dense(5),
          "inputs": sequence_batches(features=8, min_batch=2, max_batch=4, min_length=1,
                                     max_length=1), "max_examples": 6}


def test_the_same_loss_on_both_sides_passes():
    mean = _cross_entropy_of_class_0("mean")
    assert check_parity(**LINEAR, grads=True, loss=mean).worst_gradients.passed


def test_a_loss_summed_on_one_side_and_averaged_on_the_other_fails():
    torch_mean, _ = _cross_entropy_of_class_0("mean")
    _, flax_sum = _cross_entropy_of_class_0("sum")
    assert check_parity(**LINEAR, grads=False).worst.passed  # same model, same outputs
    with pytest.raises(AssertionError) as failure:
        check_parity(**LINEAR, grads=True, loss=(torch_mean, flax_sum))
    text = str(failure.value)
    assert "gradients/loss: values are not sufficiently close" in text
    assert "gradients/params/weight" in text


@pytest.mark.parametrize("loss", [lambda outputs: outputs.sum(), ("one",), 3])
def test_a_loss_that_is_not_one_function_per_side_is_a_clear_error(loss):
    from pytest_parity.errors import ParityError

    with pytest.raises(ParityError, match=r"\[parity\] loss= takes \(torch_loss, flax_loss\)"):
        check_parity(**LINEAR, grads=True, loss=loss)
