"""The automatic mapping reads names: to catch layers the order pairs wrongly, to propose real
hints, to leave out layers one side lacks, and to keep buffers and stale keys in their place."""

import contextlib
import warnings

import numpy as np
import pytest

from pytest_parity import Mapping, ParityMappingWarning, Rule, automatic_mapping
from pytest_parity.mapping import MappingError, load_mapping, save_mapping
from pytest_parity.mapping.names import name_tokens

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
nn = pytest.importorskip("flax.linen")
jnp = jax.numpy

TOKENS = jax.ShapeDtypeStruct((2, 8), jnp.float32)


def _state(model, seed=0):
    torch.manual_seed(seed)
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter)
    return {key: value.detach().numpy().copy() for key, value in model.state_dict().items()}


@contextlib.contextmanager
def _no_mapping_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParityMappingWarning)
        yield


class TorchAttention(torch.nn.Module):
    """Registers query, key, value: the order torch pairs them in."""

    def __init__(self):
        super().__init__()
        self.query = torch.nn.Linear(8, 8)
        self.key = torch.nn.Linear(8, 8)
        self.value = torch.nn.Linear(8, 8)

    def forward(self, x):
        return torch.cat([self.query(x), self.key(x), self.value(x)], dim=-1)


class FlaxAttention(nn.Module):
    """Calls key before query: the order alone pairs torch's query with Flax's key."""

    @nn.compact
    def __call__(self, x):
        key = nn.Dense(8, name="key")(x)
        query = nn.Dense(8, name="query")(x)
        return jnp.concatenate([query, key, nn.Dense(8, name="value")(x)], axis=-1)


def test_names_pair_query_with_query_when_flax_calls_key_first():
    with pytest.warns(ParityMappingWarning) as caught:
        mapping = automatic_mapping(TorchAttention(), FlaxAttention(), TOKENS)
    message = str(caught[0].message)
    assert message.startswith("[parity] automatic mapping auto:TorchAttention->FlaxAttention:")
    assert "torch query pairs with Flax query by name, not key by order" in message
    assert "torch key pairs with Flax key by name, not query by order" in message
    assert "value" not in message  # in its place by both
    assert mapping.rule_for("query.weight", "torch").canonical == "query/kernel"
    assert mapping.rule_for("key.bias", "torch").canonical == "key/bias"

    model = TorchAttention()
    state = _state(model)
    arrays, _ = mapping.torch_to_canonical(state)
    variables = mapping.canonical_to_flax(arrays)
    assert np.array_equal(variables["params"]["query"]["kernel"], state["query.weight"].T)
    assert np.array_equal(variables["params"]["key"]["kernel"], state["key.weight"].T)
    x = np.random.RandomState(0).normal(size=(2, 8)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = np.asarray(FlaxAttention().apply(variables, jnp.asarray(x)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


class TorchEncoder(torch.nn.Module):
    """BERT's names in miniature: two layers, a self-attention, its output, a pooler."""

    def __init__(self, layers=2, pooler=True):
        super().__init__()
        self.embeddings = torch.nn.Embedding(10, 8)
        self.layer = torch.nn.ModuleList(TorchLayer() for _ in range(layers))
        if pooler:
            self.pooler = torch.nn.Linear(8, 8)


class TorchLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = torch.nn.Module()
        self.attention.self = TorchAttention()
        self.attention.output = torch.nn.Linear(8, 8)
        self.output = torch.nn.Linear(8, 8)


class FlaxSelfAttention(nn.Module):
    key_first: bool

    @nn.compact
    def __call__(self, x):
        for name in ("key", "query", "value") if self.key_first else ("query", "key", "value"):
            x = x + nn.Dense(8, name=name)(x)
        return nn.Dense(8, name="output")(x)


class FlaxLayer(nn.Module):
    key_first: bool

    @nn.compact
    def __call__(self, x):
        return nn.Dense(8, name="output")(FlaxSelfAttention(self.key_first, name="attention")(x))


class FlaxEncoder(nn.Module):
    """The port: `layer_{i}` for torch's `layer.{i}`, no `self`, key called before query."""

    layers: int = 2
    key_first: bool = True
    head: bool = False

    @nn.compact
    def __call__(self, ids):
        x = nn.Embed(10, 8, name="embeddings")(ids)
        for index in range(self.layers):
            x = FlaxLayer(self.key_first, name=f"layer_{index}")(x)
        return nn.Dense(3, name="head")(x) if self.head else x


IDS = jax.ShapeDtypeStruct((2, 5), jnp.int32)


def test_a_nested_port_calling_key_first_in_every_layer_is_paired_by_name():
    with pytest.warns(ParityMappingWarning) as caught:
        mapping = automatic_mapping(TorchEncoder(pooler=False), FlaxEncoder(), IDS)
    message = str(caught[0].message)
    for index in (0, 1):
        assert (f"torch layer.{index}.attention.self.query pairs with Flax layer_{index}/"
                f"attention/query by name, not layer_{index}/attention/key by order") in message
        assert mapping.rule_for(f"layer.{index}.attention.self.query.weight",
                                "torch").canonical == f"layer_{index}/attention/query/kernel"
    assert len(message.splitlines()) == 5  # the heading and four swaps, nothing else


def test_a_port_in_torchs_order_maps_without_a_warning():
    with _no_mapping_warning():
        mapping = automatic_mapping(TorchEncoder(pooler=False), FlaxEncoder(key_first=False),
                                    IDS)
    assert mapping.rule_for("layer.1.output.weight", "torch").canonical == \
        "layer_1/output/kernel"


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.downsample = torch.nn.Conv2d(4, 8, 1)


class FlaxBlock(nn.Module):
    """Calls its shortcut first, under torch's name for it."""

    @nn.compact
    def __call__(self, x):
        shortcut = nn.Conv(8, (1, 1), name="downsample")(x)
        y = nn.Conv(8, (3, 3), padding=1, name="conv1")(x)
        return nn.Conv(8, (3, 3), padding=1, name="conv2")(y) + shortcut


def test_names_pair_what_the_order_cannot():
    with pytest.warns(ParityMappingWarning, match="torch conv1 pairs with Flax conv1 by name, "
                                                  "not downsample by order"):
        mapping = automatic_mapping(TorchBlock(), FlaxBlock(),
                                    jax.ShapeDtypeStruct((1, 8, 8, 4), jnp.float32))
    assert mapping.rule_for("downsample.weight", "torch").canonical == "downsample/kernel"


@pytest.mark.parametrize(("name", "size", "extra"), [
    ("resnet18", 64, []),
    ("vit_ti_16", 224, [Rule("class_token", "class_token", "NTC"),
                        Rule("encoder/pos_embedding", "encoder.pos_embedding", "NTC")]),
])
def test_the_zoos_ports_map_as_their_tables_without_a_warning(name, size, extra):
    from pytest_parity import registry

    pair = registry.get(name)
    with torch.device("meta"):
        model = pair.torch_model()
    with _no_mapping_warning():
        mapping = automatic_mapping(model, pair.flax_model(),
                                    jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32),
                                    extra_rules=extra)
    keys = list(model.state_dict())
    assert mapping.correspondence(keys) == pair.mapping.correspondence(keys)


class TorchStem(torch.nn.Module):
    """torchvision's names (conv1, bn1, conv2...) against Flax's automatic ones (Conv_0...)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(4)
        self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(4)


class FlaxStem(nn.Module):
    @nn.compact
    def __call__(self, x):
        for _ in range(2):
            x = nn.BatchNorm(use_running_average=True)(nn.Conv(4, (3, 3), padding=1)(x))
        return x


def test_names_that_say_nothing_leave_the_order_as_it_is():
    """Flax's automatic names and torchvision's 1-based ones share no index: order stands."""
    with _no_mapping_warning():
        mapping = automatic_mapping(TorchStem(), FlaxStem(),
                                    jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32))
    assert mapping.rule_for("conv1.weight", "torch").canonical == "Conv_0/kernel"
    assert mapping.rule_for("bn2.running_var", "torch").canonical == "BatchNorm_1/var"


def test_name_tokens_normalise_case_indices_and_separators():
    assert name_tokens("encoder.layer.0.attention.self.query") == {
        "encoder", "layer", "layer#0", "attention", "self", "query"}
    assert name_tokens("Encoder/layer_0/attention/query") == {
        "encoder", "layer", "layer#0", "attention", "query"}
    assert name_tokens("layers_0/attn/q_proj") == {"layers", "layers#0", "attn", "q", "proj"}
    assert name_tokens("block/Dense_0") == {"block"}  # Flax's automatic name says nothing


class TorchPooled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 8)
        self.pooler = torch.nn.Linear(8, 8)  # before the dense: the order alone would pair it
        self.dense = torch.nn.Linear(8, 8)


class FlaxUnpooled(nn.Module):
    @nn.compact
    def __call__(self, ids):
        return nn.Dense(8, name="dense")(nn.Embed(10, 8, name="embed")(ids))


def test_a_layer_flax_lacks_is_named_and_torch_only_is_proposed():
    with pytest.raises(MappingError) as error:
        automatic_mapping(TorchPooled(), FlaxUnpooled(), IDS)
    message = str(error.value)
    assert message.startswith("[parity] automatic mapping auto:TorchPooled->FlaxUnpooled:")
    assert "  linear: torch has 1 more than Flax" in message
    assert "    if Flax has no pooler, leave it out: torch_only=['pooler']" in message
    assert "flax_name_part" not in message


def test_torch_only_layers_are_kept_for_torch_and_never_given_to_flax():
    mapping = automatic_mapping(TorchPooled(), FlaxUnpooled(), IDS, torch_only=("pooler",))
    rule = mapping.rule_for("pooler.weight", "torch")
    assert (rule.canonical, rule.collection) == ("pooler/weight", None)
    assert mapping.rule_for("dense.weight", "torch").canonical == "dense/kernel"

    state = _state(TorchPooled())
    arrays, _ = mapping.torch_to_canonical(state)
    back = mapping.canonical_to_torch(arrays)
    assert back.keys() == state.keys()
    assert all(back[key].tobytes() == state[key].tobytes() and back[key].shape ==
               state[key].shape for key in state)
    variables = mapping.canonical_to_flax(arrays)
    expected = jax.eval_shape(lambda x: FlaxUnpooled().init(jax.random.key(0), x), IDS)
    assert jax.tree.map(np.shape, variables) == jax.tree.map(np.shape, expected)
    assert "pooler" not in variables["params"]


def test_a_layer_torch_lacks_is_flax_only_and_named_where_needed():
    with pytest.raises(MappingError, match=r"if torch has no head, leave it out: "
                                           r"flax_only=\['head'\]"):
        automatic_mapping(TorchEncoder(pooler=False), FlaxEncoder(key_first=False, head=True),
                          IDS)
    mapping = automatic_mapping(TorchEncoder(pooler=False),
                                FlaxEncoder(key_first=False, head=True), IDS, flax_only=("head",))
    assert mapping.flax_only == ("params/head/bias", "params/head/kernel")
    arrays, _ = mapping.torch_to_canonical(_state(TorchEncoder(pooler=False)))
    with pytest.raises(MappingError) as error:
        mapping.canonical_to_flax(arrays)
    assert str(error.value).startswith("[parity] auto:TorchEncoder->FlaxEncoder: Flax-only "
                                       "variables (no torch tensor gives them) lack values: "
                                       "params/head/bias, params/head/kernel")
    head = {"params": {"head": {"kernel": np.ones((8, 3)), "bias": np.zeros(3)}}}
    variables = mapping.canonical_to_flax(arrays, flax_only=head)
    assert variables["params"]["head"]["kernel"].shape == (8, 3)
    back, _ = mapping.flax_to_canonical(variables)  # the head is no canonical tensor
    assert back.keys() == arrays.keys()
    with pytest.raises(MappingError, match="not list as Flax-only: params/embeddings/x"):
        mapping.canonical_to_flax(arrays, flax_only={**head, "params": {
            **head["params"], "embeddings": {"x": np.zeros(1)}}})


class TorchWithBuffers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 8)
        self.register_buffer("position_ids", torch.arange(5)[None])  # saved
        self.register_buffer("scratch", torch.zeros(3), persistent=False)  # not saved
        self.dense = torch.nn.Linear(8, 8)


def test_a_registered_buffer_in_no_layer_is_a_torch_only_rule():
    mapping = automatic_mapping(TorchWithBuffers(), FlaxUnpooled(), IDS)
    rule = mapping.rule_for("position_ids", "torch")
    assert (rule.canonical, rule.layout, rule.collection) == ("position_ids", "buffer", None)
    assert mapping.rule_for("scratch", "torch") is None
    assert "  position_ids -> position_ids [buffer, torch only] Identity()" in mapping.describe()
    state = _state(TorchWithBuffers())
    arrays, _ = mapping.torch_to_canonical(state)
    assert np.array_equal(mapping.canonical_to_torch(arrays)["position_ids"], state["position_ids"])
    assert "position_ids" not in mapping.canonical_to_flax(arrays)["params"]


def test_a_parameter_in_no_layer_is_still_refused():
    model = TorchWithBuffers()
    model.scale = torch.nn.Parameter(torch.ones(1))
    with pytest.raises(MappingError, match="torch tensors in no layer of a known kind: scale\n"):
        automatic_mapping(model, FlaxUnpooled(), IDS)


STALE = "embeddings.position_ids"


def test_an_ignored_stale_key_is_dropped_and_said():
    rules = (Rule("embed/embedding", "embeddings.word_embeddings.weight", "ND"),)
    state = {"embeddings.word_embeddings.weight": np.ones((4, 2), np.float32),
             STALE: np.arange(512, dtype=np.int64)[None]}
    with pytest.raises(MappingError, match=f"1 torch keys have no rule: {STALE}"):
        Mapping("bert", rules).torch_to_canonical(state)
    mapping = Mapping("bert", rules, ignored=(STALE,))
    arrays, _ = mapping.torch_to_canonical(state)
    assert list(arrays) == ["embed/embedding"]
    assert mapping.ignored_keys(state) == [STALE]
    assert mapping.correspondence(state).keys() == {"embeddings.word_embeddings.weight"}
    assert f"  {STALE} -> (ignored)" in mapping.describe()
    assert Mapping("toy", (), ignored=("layer.{i}.stale",)).ignored_keys(
        ["layer.3.stale", "layer.x.stale", "layer.3.stale.weight"]) == ["layer.3.stale"]


def test_ignored_and_flax_only_are_saved_and_loaded(tmp_path):
    mapping = Mapping("bert", (Rule("embed/embedding", "embed.weight", "ND"),),
                      ignored=(STALE, "layer.{i}.old"), flax_only=("params/head/kernel",))
    path = save_mapping(mapping, tmp_path / "bert.json")
    assert load_mapping(path) == mapping
    assert "  (no torch tensor) -> params/head/kernel [Flax only]" in mapping.describe()
    plain = save_mapping(Mapping("bert", mapping.rules), tmp_path / "plain.json")
    assert "ignored" not in plain.read_text()  # a mapping without them is written as before


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Mapping("toy", (), ignored=["a"]), "toy: ignored must be a tuple of non-empty "
     "strings, got list"),
    (lambda: Mapping("toy", (), ignored=("",)), "ignored must be a tuple of non-empty strings"),
    (lambda: Mapping("toy", (), ignored=("a", "a")), "toy: ignored lists 'a' twice"),
    (lambda: Mapping("toy", (), flax_only=("kernel",)), "toy: flax_only names Flax variables "
     "as 'collection/path', got 'kernel'"),
    (lambda: Mapping("toy", (Rule("fc/kernel", "fc.weight", "IO"),), ignored=("fc.weight",)),
     "toy: torch key 'fc.weight' has a rule and is ignored"),
    (lambda: Mapping("toy", (Rule("fc{i}/kernel", "fc{i}.weight", "IO"),),
                     flax_only=("params/fc2/kernel",)),
     "toy: Flax variable 'params/fc2/kernel' has a rule and is listed as flax_only"),
], ids=["ignored-list", "ignored-empty-name", "ignored-twice", "flax-only-bare",
        "ignored-has-rule", "flax-only-has-rule"])
def test_ignored_and_flax_only_that_say_nothing_or_contradict_are_refused(make, message):
    with pytest.raises(MappingError) as error:
        make()
    assert str(error.value).startswith("[parity] ")
    assert message in str(error.value)


def test_the_public_names_are_exported_lazily():
    import pytest_parity

    for name in ("Rule", "Mapping", "Transpose", "Reshape", "Split", "Chain", "Flip",
                 "Identity", "ParityMappingWarning", "MappingError"):
        assert name in pytest_parity.__all__
        assert getattr(pytest_parity, name).__module__.startswith("pytest_parity.mapping.")
    assert issubclass(ParityMappingWarning, UserWarning)
