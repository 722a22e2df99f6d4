"""What a training check is given wrongly is a clear [parity] error, not a traceback."""

import numpy as np
import pytest

from pytest_parity.errors import ParityError
from pytest_parity.run import PairCache, check_parity
from pytest_parity.strategies import sequence_batches
from tests.support.tinynet import TINYNET

torch = pytest.importorskip("torch")
nn = pytest.importorskip("flax.linen")

IMAGES = np.random.RandomState(0).normal(0, 1, (2, 3, 8, 8)).astype(np.float32)


def sgd(parameters):
    return torch.optim.SGD(parameters, lr=0.1)


@pytest.fixture(scope="module")
def tinynet(tmp_path_factory):
    return PairCache(tmp_path_factory.mktemp("checkpoints")).get(TINYNET, "cpu", "float32", 0)


@pytest.mark.parametrize("arguments, message", [
    ({"optimizer": sgd, "steps": 0}, r"steps=0: a whole number of steps, 1 or more"),
    ({"optimizer": sgd, "steps": 2.5}, r"steps=2.5: a whole number of steps"),
    ({"optimizer": "adamw"}, r"optimizer= takes a factory of torch's optimizer"),
    ({"optimizer": (sgd, "not optax")}, r"optimizer= takes a factory"),
    ({"optimizer": lambda ps: torch.optim.RMSprop(ps)}, r"RMSprop has no optax equivalent"),
    ({"optimizer": sgd, "loss": (lambda out: out, lambda out: out)},
     r"the loss must be a scalar; it has shape \(2, 10\)"),
], ids=["no steps", "fractional steps", "a string", "not a transformation", "RMSprop",
        "a loss per element"])
def test_a_steps_check_given_wrongly_says_what_to_give(tinynet, arguments, message):
    with pytest.raises(ParityError, match=r"^\[parity\] .*" + message):
        tinynet.assert_steps_close(IMAGES, training=False, **arguments)


def test_no_batches_is_a_clear_error(tinynet):
    with pytest.raises(ParityError, match=r"\[parity\] no batches were given"):
        tinynet.assert_steps_close([], optimizer=sgd)


def test_a_gradient_loss_that_is_not_a_scalar_is_a_clear_error():
    with pytest.raises(ParityError, match=r"\[parity\] the loss must be a scalar"):
        check_parity(torch=lambda: torch.nn.Linear(4, 3), flax=lambda: nn.Dense(3),
                     inputs=sequence_batches(features=4), grads=True, max_examples=2,
                     loss=(lambda out: out, lambda out: out))


def test_a_flax_module_without_a_train_argument_and_state_names_flax_training(tinynet):
    # TinyNet's Flax __call__ is (self, x), and it holds batch_stats: which argument puts it in
    # training mode is the user's to say (it was "TypeError: TinyNet.__call__() got an
    # unexpected keyword argument 'train'" from inside the jitted step)
    with pytest.raises(ParityError, match=r"^\[parity\] TinyNet.__call__ takes no `train` "
                                          r"argument, and its batch_stats change in training "
                                          r"mode: give flax_training="):
        tinynet.assert_steps_close(IMAGES, optimizer=sgd, steps=1)


def test_training_arguments_the_module_refuses_are_a_clear_error(tinynet):
    with pytest.raises(ParityError, match=r"^\[parity\] TinyNet refused the training arguments "
                                          r"\{'training': True\}"):
        tinynet.assert_steps_close(IMAGES, optimizer=sgd, steps=1,
                                   flax_training={"training": True})


def test_a_flax_module_without_a_train_argument_or_state_trains_as_it_is(tmp_path):
    from pytest_parity.layouts import Layout
    from pytest_parity.mapping import Mapping, Rule
    from pytest_parity.mapping.transforms import OUT_IN_TO_IN_OUT
    from pytest_parity.registry import Pair

    mapping = Mapping("linear", (
        Rule("fc/kernel", "fc.weight", "IO", transform=OUT_IN_TO_IN_OUT),
        Rule("fc/bias", "fc.bias", "O")))

    class TorchLinear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x)

    class FlaxLinear(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3, name="fc")(x)

    pair = PairCache(tmp_path).get(Pair(name="linear", torch_model=TorchLinear,
                                        flax_model=FlaxLinear, mapping=mapping,
                                        input_shape=(2, 4), input_layout=Layout.SAME),
                                   "cpu", "float32", 0)
    batch = np.random.RandomState(0).normal(0, 1, (2, 4)).astype(np.float32)
    result = pair.assert_steps_close(batch, optimizer=sgd, steps=2)
    assert result.torch.losses[-1] < result.torch.losses[0]
