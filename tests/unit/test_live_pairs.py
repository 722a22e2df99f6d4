"""pair_of: a torch model and a Flax module checked without registering a pair; the call
flags each side takes, outputs already in torch's layout, the user's own variables, and a
registered pair's mapping built when it is first used."""

import warnings

import numpy as np
import pytest

from pytest_parity import ParityMappingWarning, pair_of
from pytest_parity.compare import records
from pytest_parity.errors import ParityError
from pytest_parity.layouts import Layout
from pytest_parity.registry import Pair

torch = pytest.importorskip("torch")
nn = pytest.importorskip("flax.linen")
jnp = pytest.importorskip("jax.numpy")


class TorchNet(torch.nn.Module):
    """A conv and a head; `scale` at the call scales the features (1 by default)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 5)

    def forward(self, x, scale=1.0):
        features = self.conv(x) * scale
        return {"features": features, "logits": self.head(features.mean((2, 3)))}


class FlaxNet(nn.Module):
    """The same in Flax, NHWC in; `train=True` (its default) doubles the features, as a flag
    a port takes at the call would change what it computes; `nchw_out` returns the features
    in torch's layout already."""

    nchw_out: bool = False

    @nn.compact
    def __call__(self, x, train=True):
        features = nn.Conv(4, (3, 3), padding=1, name="conv")(x) * (2.0 if train else 1.0)
        logits = nn.Dense(5, name="head")(features.mean((1, 2)))
        if self.nchw_out:
            features = jnp.transpose(features, (0, 3, 1, 2))
        return {"features": features, "logits": logits}


def _torch_net(seed=0):
    torch.manual_seed(seed)
    return TorchNet()


def test_flax_call_flags_are_given_to_every_check():
    """The Flax module's `train` flag, declared once: the forward and the gradients both run
    with it (without it the port computes its training-mode output and fails)."""
    pair = pair_of(_torch_net(), FlaxNet(), input_shape=(2, 3, 8, 8), flax_call={"train": False})
    inputs = pair.example_inputs()
    pair.assert_close(inputs)
    pair.assert_grads_close(inputs)
    untold = pair_of(_torch_net(), FlaxNet(), input_shape=(2, 3, 8, 8))
    with pytest.raises(AssertionError, match="features"):
        untold.assert_close(inputs)


def test_torch_call_flags_are_given_to_the_torch_model_only():
    """torch_call reaches the torch forward (scale=2 doubles torch's features), while the
    torch model the user holds keeps its own forward."""
    torch_model = _torch_net()
    pair = pair_of(torch_model, FlaxNet(), input_shape=(2, 3, 8, 8),
                   torch_call={"scale": 2.0}, flax_call={"train": True})
    pair.assert_close(pair.example_inputs())
    assert type(torch_model) is TorchNet
    assert type(pair.torch_model).__name__ == "TorchNet"


def test_an_output_already_in_torch_layout_is_not_moved_again():
    """A Flax side that returns NCHW feature maps (as transformers' FlaxResNetModel does):
    before, the feature map was transposed a second time, `shape (2, 8, 4, 8) does not
    match expected shape (2, 4, 8, 8)`; `output_layout` says so per output."""
    inputs = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    moved_twice = pair_of(_torch_net(), FlaxNet(nchw_out=True), input_shape=(2, 3, 8, 8),
                          flax_call={"train": False})
    with pytest.raises(AssertionError, match="does not match expected shape"):
        moved_twice.assert_close(inputs)
    pair = pair_of(_torch_net(), FlaxNet(nchw_out=True), input_shape=(2, 3, 8, 8),
                   flax_call={"train": False}, output_layout={"features": Layout.SAME})
    result = pair.assert_close(inputs)
    assert result.flax["features"].shape == (2, 4, 8, 8)


def test_the_users_own_variables_are_judged_against_the_mappings_conversion():
    """Variables converted by the user's own code that are not what the mapping carries from
    torch: the failure's weight audit says the converter, not the port, is at fault (a head
    kernel left untransposed by the converter here)."""
    torch_model = _torch_net()
    correct = pair_of(torch_model, FlaxNet(), input_shape=(2, 3, 8, 8),
                      flax_call={"train": False})
    variables = _numpy(correct.flax_variables)
    pair_of(torch_model, FlaxNet(), variables, input_shape=(2, 3, 8, 8),
            flax_call={"train": False}).assert_close(correct.example_inputs())
    head = torch_model.head.weight.detach().numpy()
    variables["params"]["head"]["kernel"] = head.reshape(head.shape[1], head.shape[0])
    broken = pair_of(torch_model, FlaxNet(), variables, input_shape=(2, 3, 8, 8),
                     flax_call={"train": False})
    with pytest.raises(AssertionError) as failure:
        broken.assert_close(correct.example_inputs())
    text = str(failure.value)
    assert "the given variables" in text and "converter" in text
    assert "head/kernel: value" in text


def _numpy(tree):
    return {key: _numpy(value) if isinstance(value, dict) else np.array(value)
            for key, value in tree.items()}


def test_variables_that_do_not_fit_the_module_are_named():
    correct = pair_of(_torch_net(), FlaxNet(), input_shape=(2, 3, 8, 8),
                      flax_call={"train": False})
    variables = _numpy(correct.flax_variables)
    del variables["params"]["head"]["bias"]
    variables["params"]["conv"]["kernel"] = variables["params"]["conv"]["kernel"][..., :2]
    with pytest.raises(ParityError, match=r"(?s)params/head/bias: missing.*"
                       r"params/conv/kernel: shape \(3, 3, 3, 2\), the module has \(3, 3, 3, 4\)"):
        pair_of(_torch_net(), FlaxNet(), variables, input_shape=(2, 3, 8, 8))


def test_a_registered_pairs_mapping_function_runs_when_the_pair_is_used():
    """`Pair(mapping=lambda: automatic_mapping(...))`: registering traces nothing and warns
    nothing; the mapping's warning comes once, when the pair is first used (before, a mapping
    built at import warned in every run that imported the pairs module)."""
    built = []

    def mapping():
        from pytest_parity import automatic_mapping

        built.append(1)
        warnings.warn("[parity] a pairing note", ParityMappingWarning, stacklevel=1)
        return automatic_mapping(TorchNet(), FlaxNet(), jnp.zeros((1, 8, 8, 3)), train=False)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = Pair("lazy_net", TorchNet, FlaxNet, mapping, input_shape=(2, 3, 8, 8),
                    flax_call={"train": False})
    assert not built and not caught
    with pytest.warns(ParityMappingWarning):
        assert pair.mapping.rules
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pair.mapping.rule_for("head.weight", "torch") is not None
    assert built == [1] and not caught


def test_the_fixture_loads_a_pair_that_is_not_registered(parity_pair):
    pair = parity_pair(Pair("unregistered_net", TorchNet, FlaxNet,
                            lambda: pair_of(TorchNet(), FlaxNet(), input_shape=(1, 3, 8, 8),
                                            flax_call={"train": False}).pair.mapping,
                            input_shape=(2, 3, 8, 8), flax_call={"train": False}))
    pair.assert_close(pair.example_inputs())


class TorchNetWithNone(TorchNet):
    """Returns an output it did not build as None, as transformers' models do with a cache
    or attentions that are off."""

    def forward(self, x, scale=1.0):
        return {**super().forward(x, scale), "attentions": None}


def test_an_output_one_side_returns_as_none_is_not_compared():
    """Before: `attentions: missing in actual`, a structure mismatch for an output torch did
    not build."""
    torch.manual_seed(0)
    pair = pair_of(TorchNetWithNone(), FlaxNet(), input_shape=(2, 3, 8, 8),
                   flax_call={"train": False})
    result = pair.assert_close(pair.example_inputs())
    assert set(result.torch) == {"features", "logits"}


class TorchNetWithAux(TorchNet):
    """Returns an output the Flax port does not have (as GPT-2's torch side returns its
    cache)."""

    def forward(self, x, scale=1.0):
        outputs = super().forward(x, scale)
        return {**outputs, "aux": outputs["logits"] * 3.0}


def test_outputs_both_return_are_what_every_check_compares():
    """outputs="common" holds for the gradients and the training steps too (before, only
    assert_close dropped the one-sided output: the gradient check failed at margin 1.3e6)."""
    torch.manual_seed(0)
    pair = pair_of(TorchNetWithAux(), FlaxNet(), input_shape=(2, 3, 8, 8),
                   flax_call={"train": False}, outputs="common")
    inputs = pair.example_inputs()
    assert set(pair.assert_close(inputs).torch) == {"features", "logits"}
    pair.assert_grads_close(inputs)
    pair.assert_steps_close(inputs, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1),
                            steps=2, training=False)


class TorchNetWithHidden(TorchNet):
    def forward(self, x, scale=1.0):
        outputs = super().forward(x, scale)
        return {**outputs, "hidden": (outputs["features"], outputs["features"] * 2.0)}


class FlaxNetWithHidden(nn.Module):
    """NCHW feature maps, also inside a tuple of hidden states (FlaxResNetModel with
    output_hidden_states=True)."""

    @nn.compact
    def __call__(self, x):
        outputs = FlaxNet(nchw_out=True, name="net")(x, train=False)
        features = outputs["features"]
        return {**outputs, "hidden": (features, features * 2.0)}


def test_output_layout_reaches_every_array_of_an_output():
    """Before: `hidden/0: shape (2, 8, 4, 8) does not match expected shape (2, 4, 8, 8)`;
    a name that is no output is an error, not ignored."""
    torch_model = TorchNetWithHidden()
    pair = pair_of(torch_model, FlaxNetWithHidden(), input_shape=(2, 3, 8, 8),
                   mapping_options={"hints": [("conv", "net/conv"), ("head", "net/head")]},
                   output_layout=Layout.SAME)
    assert pair.assert_close(pair.example_inputs()).flax["hidden"][1].shape == (2, 4, 8, 8)
    misnamed = pair_of(torch_model, FlaxNetWithHidden(), input_shape=(2, 3, 8, 8),
                       mapping=pair.pair.mapping, output_layout={"featurse": Layout.SAME})
    with pytest.raises(ParityError, match="output_layout names 'featurse'"):
        misnamed.assert_close(pair.example_inputs())


def test_a_pair_does_not_keep_the_users_models_alive():
    """Before, the process's caches of pair structures held the live torch model (weights
    and all) for good."""
    import gc
    import weakref

    torch_model = _torch_net()
    held = weakref.ref(torch_model)
    pair_of(torch_model, FlaxNet(), input_shape=(2, 3, 8, 8), flax_call={"train": False})
    del torch_model
    gc.collect()
    assert held() is None


def test_a_wrapped_torch_model_keeps_its_input_check():
    """The flags' wrapper takes any keyword; misnamed inputs are still named before the call."""
    from pytest_parity.calls import torch_called_with
    from pytest_parity.inputs import InputError
    from pytest_parity.run.sides import called

    model = torch_called_with(_torch_net(), {"scale": 1.0})
    with pytest.raises(InputError, match="cannot take the named inputs images"):
        called(model, inputs={"images": torch.zeros(1, 3, 8, 8)})


def test_a_lazy_mapping_copies_without_building():
    import copy

    built = []
    pair = Pair("lazy_copy", TorchNet, FlaxNet, lambda: built.append(1),
                input_shape=(2, 3, 8, 8))
    copy.copy(pair.mapping)
    copy.deepcopy(pair.mapping)
    assert not built
    with pytest.raises(ParityError, match="returned NoneType, not a Mapping"):
        assert pair.mapping.rules


def test_unregistered_pairs_of_one_name_are_not_mixed_up(parity_pair):
    """The fixture's cache of loaded pairs is keyed by the pair, not its name."""
    def mapping():
        return pair_of(TorchNet(), FlaxNet(), input_shape=(1, 3, 8, 8),
                       flax_call={"train": False}).pair.mapping

    evaluating = Pair("net", TorchNet, FlaxNet, mapping, input_shape=(2, 3, 8, 8),
                      flax_call={"train": False})
    training = Pair("net", TorchNet, FlaxNet, mapping, input_shape=(2, 3, 8, 8),
                    flax_call={"train": True})
    parity_pair(evaluating).assert_close(evaluating.example_inputs(0))
    with records.collecting(), pytest.raises(AssertionError, match="features"):
        parity_pair(training).assert_close(training.example_inputs(0))
