"""The automatic mapping with a Flax NNX side: the same Mapping as for a Linen port of the same
tree, its layers in call order (traced abstractly), the names logic as for Linen."""

import time
import warnings

import numpy as np
import pytest

from pytest_parity import ParityMappingWarning, Rule, automatic_mapping, registry
from pytest_parity.mapping import MappingError
from tests.support.tinynet import MAPPING as TINYNET_MAPPING
from tests.support.tinynet import flax_tinynet, nnx_tinynet, torch_tinynet

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
jnp = jax.numpy

IMAGES = jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)
TOKENS = jax.ShapeDtypeStruct((2, 5), jnp.int32)


def _meta(build):
    with torch.device("meta"):
        return build()


def _nnx_port(factory):
    from pytest_parity.nnx_bridge import port

    return port(factory)


@pytest.mark.parametrize("given", ["factory", "module", "abstract module", "port"])
def test_tinynet_nnx_maps_as_tinynets_table(given):
    flax_side = {"factory": lambda: nnx_tinynet, "module": nnx_tinynet,
                 "abstract module": lambda: nnx.eval_shape(nnx_tinynet),
                 "port": lambda: _nnx_port(nnx_tinynet)}[given]()
    torch_model = _meta(torch_tinynet)
    keys = list(torch_model.state_dict())
    mapping = automatic_mapping(torch_model, flax_side, IMAGES)
    assert mapping.correspondence(keys) == TINYNET_MAPPING.correspondence(keys)
    assert mapping == automatic_mapping(torch_model, flax_tinynet(), IMAGES)  # Linen's
    assert mapping.architecture == "auto:TinyNet->TinyNet"


class TorchChain(torch.nn.Module):
    """Two convolutions whose names say nothing about the port's."""

    def __init__(self):
        super().__init__()
        self.first = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.second = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.second(self.first(x))


class NNXChain(nnx.Module):
    """Its attributes in the other alphabetical order: nnx.iter_modules lists `layer_a` (the
    second convolution) first; only the call order pairs them."""

    def __init__(self, rngs):
        self.layer_b = nnx.Conv(3, 8, (3, 3), padding=1, rngs=rngs)
        self.layer_a = nnx.Conv(8, 4, (1, 1), rngs=rngs)

    def __call__(self, x):
        return self.layer_a(self.layer_b(x))


def test_nnx_layers_pair_in_call_order_not_attribute_order():
    assert [path for path, _ in nnx.iter_modules(NNXChain(nnx.Rngs(0)))][:2] == [
        ("layer_a",), ("layer_b",)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParityMappingWarning)
        mapping = automatic_mapping(TorchChain(), lambda: NNXChain(nnx.Rngs(0)), IMAGES)
    assert mapping.rule_for("first.weight", "torch").canonical == "layer_b/kernel"
    assert mapping.rule_for("second.bias", "torch").canonical == "layer_a/bias"


def test_the_nnx_module_is_traced_abstractly():
    """Its call sees tracers of shapes (nothing runs on data), and no initializer runs."""
    seen = []

    class Watched(NNXChain):
        def __call__(self, x):
            seen.append((isinstance(x, jax.core.Tracer),
                         isinstance(self.layer_a.kernel.get_value(), jax.core.Tracer)))
            return super().__call__(x)

    built = []

    def factory():
        built.append(True)
        return Watched(nnx.Rngs(0))

    automatic_mapping(TorchChain(), factory, IMAGES)
    assert seen == [(True, True)] and built == [True]


class PlainConv(nnx.Conv):
    """A subclass that inherits nnx.Conv's call."""


class NNXPlainChain(NNXChain):
    def __init__(self, rngs):
        self.layer_b = PlainConv(3, 8, (3, 3), padding=1, rngs=rngs)
        self.layer_a = nnx.Conv(8, 4, (1, 1), rngs=rngs)


def test_the_wrapped_calls_are_restored_even_where_the_call_fails():
    calls = (nnx.Conv.__dict__["__call__"], NNXChain.__dict__["__call__"])
    mapping = automatic_mapping(TorchChain(), lambda: NNXPlainChain(nnx.Rngs(0)), IMAGES)
    assert mapping.rule_for("first.weight", "torch").canonical == "layer_b/kernel"
    with pytest.raises(Exception, match="3"):  # 5 input channels where the kernel takes 3
        automatic_mapping(TorchChain(), lambda: NNXPlainChain(nnx.Rngs(0)),
                          jax.ShapeDtypeStruct((1, 8, 8, 5), jnp.float32))
    assert (nnx.Conv.__dict__["__call__"], NNXChain.__dict__["__call__"]) == calls
    assert "__call__" not in PlainConv.__dict__ and "__call__" not in NNXPlainChain.__dict__


class TorchEncoder(torch.nn.Module):
    """An embedding, a stack of attention layers (a ModuleList) and a head: every kind an
    encoder has, with torch's names."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 8)
        self.layers = torch.nn.ModuleList(TorchLayer() for _ in range(2))
        self.norm = torch.nn.LayerNorm(8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x))


class TorchLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        self.ln = torch.nn.LayerNorm(8)
        self.mlp = torch.nn.Linear(8, 8)

    def forward(self, x):
        x = x + self.attention(x, x, x, need_weights=False)[0]
        return x + self.mlp(self.ln(x))


class NNXLayer(nnx.Module):
    def __init__(self, rngs):
        self.attention = nnx.MultiHeadAttention(2, 8, decode=False, rngs=rngs)
        self.ln = nnx.LayerNorm(8, epsilon=1e-5, rngs=rngs)
        self.mlp = nnx.Linear(8, 8, rngs=rngs)

    def __call__(self, x):
        x = x + self.attention(x)
        return x + self.mlp(self.ln(x))


class NNXEncoder(nnx.Module):
    """The port: its layers in an nnx.List (paths layers/0/..., as torch's layers.0...)."""

    def __init__(self, rngs):
        self.embed = nnx.Embed(10, 8, rngs=rngs)
        self.layers = nnx.List([NNXLayer(rngs) for _ in range(2)])
        self.norm = nnx.LayerNorm(8, epsilon=1e-5, rngs=rngs)
        self.head = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x))


def test_an_nnx_encoder_maps_and_computes_what_torch_does():
    """Embed, MultiHeadAttention, LayerNorm and Linear found, list indices as path parts; the
    weights carried through the mapping make the NNX port compute torch's output."""
    torch.manual_seed(0)
    model = TorchEncoder().eval()
    mapping = automatic_mapping(model, lambda: NNXEncoder(nnx.Rngs(0)), TOKENS)
    assert mapping.rule_for("layers.1.attention.in_proj_weight", "torch").canonical_paths == (
        "layers/1/attention/query/kernel", "layers/1/attention/key/kernel",
        "layers/1/attention/value/kernel")
    assert mapping.rule_for("layers.0.attention.out_proj.weight", "torch").canonical == \
        "layers/0/attention/out/kernel"
    assert mapping.rule_for("embed.weight", "torch").canonical == "embed/embedding"
    assert mapping.rule_for("layers.1.ln.weight", "torch").canonical == "layers/1/ln/scale"

    state = {key: value.detach().numpy() for key, value in model.state_dict().items()}
    arrays, _ = mapping.torch_to_canonical(state)
    port = _nnx_port(lambda: NNXEncoder(nnx.Rngs(0)))
    ids = np.random.RandomState(0).randint(0, 10, (2, 5))
    got = np.asarray(jax.jit(port.apply)(mapping.canonical_to_flax(arrays), jnp.asarray(ids)))
    with torch.no_grad():
        expected = model(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


class TorchImage(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.gn = torch.nn.GroupNorm(2, 8)
        self.up = torch.nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.bn = torch.nn.BatchNorm2d(4)


class NNXImage(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 8, (3, 3), padding=1, rngs=rngs)
        self.gn = nnx.GroupNorm(8, num_groups=2, rngs=rngs)
        self.up = nnx.ConvTranspose(8, 4, (2, 2), strides=(2, 2), rngs=rngs)
        self.bn = nnx.BatchNorm(4, use_running_average=True, rngs=rngs)

    def __call__(self, x):
        return self.bn(self.up(self.gn(self.conv(x))))


def test_nnx_image_layers_get_the_rules_linens_get():
    """Conv, GroupNorm, ConvTranspose, BatchNorm (its statistics at batch_stats/...): the
    mapping of a Linen port of the same tree, rule for rule."""
    import flax.linen as nn

    class Linen(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.GroupNorm(num_groups=2, name="gn")(nn.Conv(8, (3, 3), padding=1,
                                                               name="conv")(x))
            x = nn.ConvTranspose(4, (2, 2), strides=(2, 2), name="up")(x)
            return nn.BatchNorm(use_running_average=True, name="bn")(x)

    torch_model = _meta(TorchImage)
    mapping = automatic_mapping(torch_model, lambda: NNXImage(nnx.Rngs(0)), IMAGES)
    assert mapping.rules == automatic_mapping(torch_model, Linen(), IMAGES).rules
    rule = mapping.rule_for("bn.running_var", "torch")
    assert (rule.canonical, rule.collection) == ("bn/var", "batch_stats")


class TorchAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.query = torch.nn.Linear(8, 8)
        self.key = torch.nn.Linear(8, 8)
        self.value = torch.nn.Linear(8, 8)


class NNXAttention(nnx.Module):
    """Calls key before query: the order alone pairs torch's query with NNX's key."""

    def __init__(self, rngs):
        self.query = nnx.Linear(8, 8, rngs=rngs)
        self.key = nnx.Linear(8, 8, rngs=rngs)
        self.value = nnx.Linear(8, 8, rngs=rngs)

    def __call__(self, x):
        key = self.key(x)
        return jnp.concatenate([self.query(x), key, self.value(x)], axis=-1)


def test_names_pair_query_with_query_when_nnx_calls_key_first():
    with pytest.warns(ParityMappingWarning) as caught:
        mapping = automatic_mapping(TorchAttention(), lambda: NNXAttention(nnx.Rngs(0)),
                                    jax.ShapeDtypeStruct((2, 8), jnp.float32))
    message = str(caught[0].message)
    assert message.startswith("[parity] automatic mapping auto:TorchAttention->NNXAttention:")
    assert "torch query pairs with Flax query by name, not key by order" in message
    assert mapping.rule_for("query.weight", "torch").canonical == "query/kernel"


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.downsample = torch.nn.Conv2d(4, 8, 1)


class NNXBlock(nnx.Module):
    """Calls its shortcut first, under another name than torch's."""

    def __init__(self, rngs):
        self.conv1 = nnx.Conv(4, 8, (3, 3), padding=1, rngs=rngs)
        self.conv2 = nnx.Conv(8, 8, (3, 3), padding=1, rngs=rngs)
        self.shortcut = nnx.Conv(4, 8, (1, 1), rngs=rngs)

    def __call__(self, x):
        shortcut = self.shortcut(x)
        return self.conv2(self.conv1(x)) + shortcut


def test_an_ambiguous_nnx_port_gets_a_hint_and_the_hint_resolves_it():
    block = jax.ShapeDtypeStruct((1, 8, 8, 4), jnp.float32)
    with pytest.raises(MappingError) as error:
        automatic_mapping(TorchBlock(), lambda: NNXBlock(nnx.Rngs(0)), block)
    assert "    unpaired Flax: shortcut (Conv: bias (8,), kernel (1, 1, 4, 8))" in \
        str(error.value)
    assert "    resolve it by name: hints=[('conv1', 'shortcut')]" in str(error.value)
    mapping = automatic_mapping(TorchBlock(), lambda: NNXBlock(nnx.Rngs(0)), block,
                                hints=[("downsample", "shortcut")])
    assert mapping.rule_for("downsample.weight", "torch").canonical == "shortcut/kernel"
    assert mapping.rule_for("conv1.weight", "torch").canonical == "conv1/kernel"


class TorchPooled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 8)
        self.dense = torch.nn.Linear(8, 8)
        self.pooler = torch.nn.Linear(8, 8)


class NNXUnpooled(nnx.Module):
    def __init__(self, rngs):
        self.embed = nnx.Embed(10, 8, rngs=rngs)
        self.dense = nnx.Linear(8, 8, rngs=rngs)

    def __call__(self, ids):
        return self.dense(self.embed(ids))


def test_a_layer_the_nnx_port_lacks_is_named_and_left_out_as_torch_only():
    with pytest.raises(MappingError, match=r"if Flax has no pooler, leave it out: "
                                           r"torch_only=\['pooler'\]"):
        automatic_mapping(TorchPooled(), lambda: NNXUnpooled(nnx.Rngs(0)), TOKENS)
    mapping = automatic_mapping(TorchPooled(), lambda: NNXUnpooled(nnx.Rngs(0)), TOKENS,
                                torch_only=("pooler",))
    rule = mapping.rule_for("pooler.weight", "torch")
    assert (rule.canonical, rule.collection) == ("pooler/weight", None)
    assert mapping.rule_for("dense.weight", "torch").canonical == "dense/kernel"


def test_an_nnx_variable_in_no_known_layer_is_named():
    class Bare(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(10, 8, rngs=rngs)
            self.dense = nnx.Linear(8, 8, rngs=rngs)
            self.token = nnx.Param(jnp.zeros((8,)))

        def __call__(self, ids):
            return self.dense(self.embed(ids) + self.token)

    with pytest.raises(MappingError, match=r"Flax variables in no layer of a known kind: "
                                           r"params/token"):
        automatic_mapping(TorchPooled(), lambda: Bare(nnx.Rngs(0)), TOKENS,
                          torch_only=("pooler",))
    mapping = automatic_mapping(TorchPooled(), lambda: Bare(nnx.Rngs(0)), TOKENS,
                                torch_only=("pooler",), flax_only=("token",))
    assert mapping.flax_only == ("params/token",)


def _timed(build, *args, **kwargs):
    started = time.perf_counter()
    result = build(*args, **kwargs)
    return result, time.perf_counter() - started


@pytest.mark.parametrize(("name", "size", "extra"), [
    ("resnet50_nnx", 64, []),
    ("vit_ti_16_nnx", 224, [Rule("class_token", "class_token", "NTC"),
                            Rule("encoder/pos_embedding", "encoder.pos_embedding", "NTC")]),
])
def test_the_nnx_zoo_maps_as_its_tables_in_about_linens_time(name, size, extra):
    """The registered NNX ports against torchvision: their twins' tables, no warning; the
    mapping of the abstract port (as the registry builds it once per process) takes about what
    the Linen twin's does, and NNX's abstract construction (nnx.eval_shape of the factory)
    comes on top where a factory is given."""
    from pytest_parity.nnx_bridge import port

    pair, twin = registry.get(name), registry.get(name.removesuffix("_nnx"))
    torch_model = _meta(pair.torch_model)
    keys = list(torch_model.state_dict())
    images = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParityMappingWarning)
        automatic_mapping(torch_model, twin.flax_model(), images, extra_rules=extra)  # warm
        linen, linen_seconds = _timed(automatic_mapping, torch_model, twin.flax_model(),
                                      images, extra_rules=extra)
        abstract, build_seconds = _timed(port, pair.flax_model)
        mapping, nnx_seconds = _timed(automatic_mapping, torch_model, abstract, images,
                                      extra_rules=extra)
    assert mapping.correspondence(keys) == pair.mapping.correspondence(keys)
    assert mapping.rules == linen.rules
    print(f"automatic mapping of {name}: {nnx_seconds:.2f} s (Linen {linen_seconds:.2f} s, "
          f"ratio {nnx_seconds / linen_seconds:.2f}); the abstract build {build_seconds:.2f} s")
    assert nnx_seconds < 3 * linen_seconds + 0.5  # about Linen's time, with room for a busy box
