"""The diagnosis of a Flax NNX side: the weight and settings audits read NNX modules, the trace
captures NNX submodules in one jitted run and runs one on its own on torch's inputs, the
culprit's own code is read from its jaxpr; what a Linen twin's diagnosis says, said alike."""

import numpy as np
import pytest

from pytest_parity.diagnose.settings import audit_settings
from pytest_parity.mapping import Mapping
from pytest_parity.mapping.layer_rules import (
    batch_norm_rules,
    conv_rules,
    linear_rules,
    norm_rules,
)
from pytest_parity.registry import Pair
from tests.support.tinynet import TINYNET, TINYNET_NNX, flax_tinynet, nnx_tinynet

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
jnp = jax.numpy


def _loaded(pair, factory=None):
    """The pair loaded as parity_pair loads it (float32, cpu); its Flax side `factory`'s
    module (built abstractly behind NNXPort, as the registry builds it) where given."""
    from pytest_parity.nnx_bridge import port
    from pytest_parity.run import checkpoint_for, load_pair

    loaded = load_pair(pair, checkpoint_for(pair, 0, None), "cpu", "float32")
    if factory is not None:
        module = port(factory)
        loaded.flax_model, loaded.flax_apply = module, jax.jit(module.apply)
    return loaded


def _images(scale=1.0):
    return np.random.RandomState(1).normal(0, scale, (2, 3, 8, 8)).astype(np.float32)


def _settings(diagnosis):
    return [finding.line() for finding in diagnosis.settings]


def test_a_batch_norm_epsilon_is_named_by_the_trace_and_the_settings_audit():
    """(a) tinynet_nnx with BatchNorm epsilon 1e-1: bn1 is the first divergent module, its
    epsilon the setting, and the failure text says so."""
    loaded = _loaded(TINYNET_NNX, lambda: nnx_tinynet(epsilon=1e-1))
    diagnosis = loaded.diagnose(_images())
    assert diagnosis.weights == []
    assert _settings(diagnosis) == ["torch bn1 <-> flax bn1: epsilon: torch 1e-05, flax 0.1"]
    assert diagnosis.trace.culprit.pair.flax == "bn1"
    with pytest.raises(AssertionError) as failure:
        loaded.assert_close(_images())
    assert "first divergent module: torch bn1 <-> flax bn1" in str(failure.value)


def test_an_nnx_diagnosis_is_its_linen_twins():
    """The same bug in the Linen and the NNX port: the same lines, and every module run on its
    own on torch's inputs gives the same figures (fc's natural output differs by 1e3 times
    the tolerance, on torch's inputs it agrees)."""
    nnx_side = _loaded(TINYNET_NNX, lambda: nnx_tinynet(epsilon=1e-1))
    linen_side = _loaded(TINYNET, lambda: flax_tinynet(epsilon=1e-1))
    nnx_diagnosis = nnx_side.diagnose(_images(), every_module_alone=True)
    linen_diagnosis = linen_side.diagnose(_images(), every_module_alone=True)
    assert nnx_diagnosis.lines() == linen_diagnosis.lines()
    nnx_modules = {v.pair.flax: v for v in nnx_diagnosis.trace.modules}
    linen_modules = {v.pair.flax: v for v in linen_diagnosis.trace.modules}
    assert sorted(nnx_modules) == ["", "bn1", "conv1", "fc"]
    for path, verdict in nnx_modules.items():
        assert verdict.judged == "alone", path
        np.testing.assert_allclose(verdict.isolated_error, linen_modules[path].isolated_error,
                                   rtol=1e-5, atol=1e-9)
    assert nnx_modules["fc"].output_margin > 100 and nnx_modules["fc"].isolated_margin < 1


def test_a_batch_norm_momentum_in_nnxs_default_is_named_as_changing_training_only():
    """(c) NNX's default momentum 0.99 (torch's 0.01) where torch's is 0.1: in eval mode the
    output does not change, so no comparison fails; the settings audit (run by diagnose on
    any input, without descend) names it as a difference in training, which a diagnosis of
    the forward pass leaves out, and the trace finds nothing."""
    import flax.nnx as nnx_

    def factory():
        model = nnx_tinynet()
        model.bn1 = nnx_.BatchNorm(4, use_running_average=True, epsilon=1e-5,
                                   rngs=nnx_.Rngs(0))
        return model

    loaded = _loaded(TINYNET_NNX, factory)
    loaded.assert_close(_images())  # eval mode: the same output
    diagnosis = loaded.diagnose(_images())
    assert diagnosis.settings == [] and not diagnosis.found
    [finding] = audit_settings(loaded.torch_model, {"bn1": factory().bn1}, [("bn1", "bn1")])
    assert finding.line() == (
        "torch bn1 <-> flax bn1: momentum (training only): torch 0.1, flax 0.01 (flax "
        "momentum=0.99, i.e. 0.01 in torch's convention (torch weights the batch by momentum, "
        "flax the running average))")


def test_a_weight_stored_wrong_in_the_nnx_variables_is_named_by_the_weight_audit():
    """(d) The convolution's kernel with its height and width swapped (OIHW read as OIWH) in
    the NNX port's variables: the audit names it, and the trace finds the convolution."""
    loaded = _loaded(TINYNET_NNX)
    torch_kernel = loaded.torch_model.conv1.weight.detach().numpy()
    loaded.flax_variables["params"]["conv1"]["kernel"] = jnp.asarray(
        np.transpose(torch_kernel, (3, 2, 1, 0)))
    diagnosis = loaded.diagnose(_images())
    assert [(f.where, f.what) for f in diagnosis.weights] == [("conv1/kernel", "value")]
    assert "torch conv1.weight, " in diagnosis.weights[0].note
    assert diagnosis.settings == []
    assert diagnosis.trace.culprit.pair.flax == "conv1"


class TorchNet(torch.nn.Module):
    """A convolution, BatchNorm, LayerNorm, an MLP with GELU in a Sequential, a head."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(8)
        self.norm = torch.nn.LayerNorm(8)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(),
                                       torch.nn.Linear(16, 8))
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = self.norm(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))
        return self.head(x + self.mlp(x))


class Mlp(nnx.Module):
    def __init__(self, approximate, rngs):
        self.fc1 = nnx.Linear(8, 16, rngs=rngs)
        self.fc2 = nnx.Linear(16, 8, rngs=rngs)
        self.approximate = approximate

    def __call__(self, x):
        return self.fc2(nnx.gelu(self.fc1(x), approximate=self.approximate))


class NNXNet(nnx.Module):
    """The port; each keyword other than its default is a porting bug."""

    def __init__(self, *, ln_epsilon=1e-5, approximate=False, batch_statistics=False,
                 rngs):
        self.conv = nnx.Conv(3, 8, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                             rngs=rngs)
        self.bn = nnx.BatchNorm(8, use_running_average=True, momentum=0.9, epsilon=1e-5,
                                rngs=rngs)
        self.norm = nnx.LayerNorm(8, epsilon=ln_epsilon, rngs=rngs)
        self.mlp = Mlp(approximate, rngs)
        self.head = nnx.Linear(8, 4, rngs=rngs)
        self.batch_statistics = batch_statistics

    def __call__(self, x):
        x = self.bn(self.conv(x), use_running_average=not self.batch_statistics)
        x = self.norm(jnp.mean(nnx.relu(x), axis=(1, 2)))
        return self.head(x + self.mlp(x))


NET_MAPPING = Mapping("nnx_net", (
    *conv_rules("conv", "conv", bias=False), *batch_norm_rules("bn", "bn"),
    *norm_rules("norm", "norm"), *linear_rules("mlp.0", "mlp/fc1"),
    *linear_rules("mlp.2", "mlp/fc2"), *linear_rules("head", "head")))


def _net(**bug):
    """A pair of TorchNet and the NNX port with `bug` (not registered)."""
    return Pair("nnx_net", TorchNet, lambda: NNXNet(**bug, rngs=nnx.Rngs(0)), NET_MAPPING,
                (1, 3, 8, 8))


def test_a_correct_nnx_port_has_nothing_to_diagnose():
    loaded = _loaded(_net())
    loaded.assert_close(_images())
    diagnosis = loaded.diagnose(_images(), every_module_alone=True)
    assert not diagnosis.found
    assert {v.pair.flax for v in diagnosis.trace.modules} == {
        "", "conv", "bn", "norm", "mlp", "mlp/fc1", "mlp/fc2", "head"}
    assert all(v.judged == "alone" and v.isolated_margin <= 1 for v in diagnosis.trace.modules)


def test_a_layer_norm_with_nnxs_default_epsilon_is_caught():
    """(b) torch LayerNorm eps 1e-5 ported with NNX's default (1e-6): the settings audit names
    it, and on small activations (the LayerNorm's variance near its epsilon) the output fails
    and the trace names the LayerNorm."""
    loaded = _loaded(_net(ln_epsilon=1e-6))
    images = _images(scale=0.01)
    diagnosis = loaded.diagnose(images)
    assert _settings(diagnosis) == ["torch norm <-> flax norm: epsilon: torch 1e-05, flax 1e-06"]
    assert diagnosis.trace.culprit.pair.flax == "norm"
    with pytest.raises(AssertionError, match="first divergent module: torch norm <-> flax norm"):
        loaded.assert_close(images)


def test_the_culprits_own_code_is_read_from_the_nnx_jaxpr():
    """tanh GELU inside the NNX MLP: the MLP is the culprit, its own code between mlp.0 and
    mlp.2 is torch's exact GELU, and the jaxpr of the NNX MLP computes tanh."""
    diagnosis = _loaded(_net(approximate=True)).diagnose(_images())
    assert diagnosis.trace.culprit.pair.flax == "mlp"
    assert diagnosis.trace.own_code == ["mlp.1 (GELU(approximate='none'))"]
    assert diagnosis.trace.between == ("mlp.0", "mlp.2")
    assert [(f.what, f.torch, f.flax) for f in diagnosis.settings] == [
        ("GELU approximate (mlp.1)", "'none'", "'tanh'")]


def test_batch_statistics_asked_for_at_the_call_are_named():
    """`bn(x, use_running_average=False)` in an NNX port of a torch model in eval mode: the
    setting given at the call is read like a field (NNX runs on batch statistics inside the
    jitted capture, so the trace runs too)."""
    diagnosis = _loaded(_net(batch_statistics=True)).diagnose(_images())
    assert _settings(diagnosis) == [
        "torch bn <-> flax bn: batch statistics: torch False (eval mode), flax True "
        "(use_running_average=False)"]
    assert diagnosis.trace.culprit.pair.flax == "bn"


def _rngs():
    return nnx.Rngs(0)


# torch layer, NNX layer (a factory), the findings as (setting, torch, flax); [] where they agree.
NNX_LAYERS = {
    "conv-agrees": (lambda: torch.nn.Conv2d(4, 8, 3, stride=2, padding=2, dilation=2, groups=2),
                    lambda: nnx.Conv(4, 8, (3, 3), strides=2, padding=2, kernel_dilation=2,
                                     feature_group_count=2, rngs=_rngs()), []),
    "conv-stride-padding-dilation-groups-bias": (
        lambda: torch.nn.Conv2d(4, 8, 3, stride=2, padding=2, dilation=2, groups=2),
        lambda: nnx.Conv(4, 8, (3, 3), use_bias=False, rngs=_rngs()),
        [("stride", "(2, 2)", "(1, 1)"), ("dilation", "(2, 2)", "(1, 1)"),
         ("bias", "True", "False"), ("padding", "(2, 2)", "'SAME'"), ("groups", "2", "1")]),
    "linear-out-features-and-bias": (
        lambda: torch.nn.Linear(4, 8), lambda: nnx.Linear(4, 6, use_bias=False, rngs=_rngs()),
        [("bias", "True", "False"), ("out features", "8", "6")]),
    "layer-norm-nnx-default-epsilon": (
        lambda: torch.nn.LayerNorm(8), lambda: nnx.LayerNorm(8, rngs=_rngs()),
        [("epsilon", "1e-05", "1e-06")]),
    "group-norm-groups": (
        lambda: torch.nn.GroupNorm(4, 8), lambda: nnx.GroupNorm(8, num_groups=2, epsilon=1e-5,
                                                                rngs=_rngs()),
        [("groups", "4", "2")]),
    "batch-norm-nnx-defaults": (  # momentum 0.99, batch statistics (use_running_average=False)
        lambda: torch.nn.BatchNorm2d(8).eval(), lambda: nnx.BatchNorm(8, rngs=_rngs()),
        [("momentum", "0.1", "0.01"), ("batch statistics", "False (eval mode)",
                                       "True (use_running_average=False)")]),
    "attention-heads": (
        lambda: torch.nn.MultiheadAttention(8, 2, batch_first=True),
        lambda: nnx.MultiHeadAttention(4, 8, decode=False, rngs=_rngs()),
        [("num_heads", "2", "4")]),
    "embedding-padding-idx": (
        lambda: torch.nn.Embedding(10, 8, padding_idx=0), lambda: nnx.Embed(10, 8, rngs=_rngs()),
        [("padding_idx", "0", "None")]),
}


@pytest.mark.parametrize("case", NNX_LAYERS)
def test_the_settings_audit_reads_nnx_layers(case):
    from pytest_parity.diagnose.settings import audit_settings

    torch_layer, nnx_layer, expected = NNX_LAYERS[case]
    module = nnx.eval_shape(nnx_layer)  # as the port holds it: abstract
    findings = audit_settings(torch_layer(), {"": module}, [("", "")])
    assert [(f.what, f.torch, f.flax) for f in findings] == expected
