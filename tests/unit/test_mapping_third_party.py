"""The automatic mapping on ports this project did not write: transformers' Flax wrappers and
their Conv1D, call order traced on both sides, tied weights, tensors of no known layer kind,
and extra rules that override or name nothing."""

import contextlib
import warnings

import numpy as np
import pytest

from pytest_parity import ParityMappingWarning, Rule, automatic_mapping
from pytest_parity.mapping import Identity, MappingError, Transpose, load_mapping, save_mapping

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
nn = pytest.importorskip("flax.linen")
jnp = jax.numpy


def _randomized(model, seed=0):
    """Every parameter redrawn (norms' weights around 1), so a shifted pairing shows."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            norm = "norm" in type(module).__name__.lower()
            for name, parameter in module.named_parameters(recurse=False):
                noise = torch.randn_like(parameter)
                parameter.copy_(1 + noise * 0.1 if norm and name == "weight" else noise * 0.02)
    return model.eval()


def _flax_variables(mapping, model):
    state = {key: value.detach().numpy().copy() for key, value in model.state_dict().items()}
    arrays, _ = mapping.torch_to_canonical(state)
    return mapping.canonical_to_flax(arrays)


def _torch_out(model, *args, **kwargs):
    with torch.no_grad():
        out = model(*args, **kwargs)
    return _first(out).numpy()


def _flax_out(module, variables, *args, **kwargs):
    out = module.apply(variables, *args, **kwargs)
    return np.asarray(_first(out))


def _first(out):
    """A model's output, or its first one (transformers' outputs: the hidden states, logits)."""
    return out[0] if isinstance(out, tuple) or hasattr(out, "to_tuple") else out


# --- 4. call order -------------------------------------------------------------------------


class NormFirst(torch.nn.Module):
    """Registers its final norm before its blocks, and calls it after them."""

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(8)
        self.blocks = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.LayerNorm(8), torch.nn.Linear(8, 8)) for _ in range(2))

    def forward(self, x):
        for block in self.blocks:
            x = x + block(x)
        return self.norm(x)


class FlaxNormLast(nn.Module):
    """The same model with Flax's automatic names, which say nothing about which is which."""

    @nn.compact
    def __call__(self, x):
        for _ in range(2):
            x = x + nn.Dense(8)(nn.LayerNorm(epsilon=1e-5)(x))
        return nn.LayerNorm(epsilon=1e-5)(x)


X = np.random.RandomState(0).normal(size=(2, 8)).astype(np.float32)


def test_a_norm_registered_first_and_called_last_pairs_by_call_order():
    model = _randomized(NormFirst())
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParityMappingWarning)
        mapping = automatic_mapping(model, FlaxNormLast(), jnp.asarray(X))
    assert mapping.rule_for("norm.weight", "torch").canonical == "LayerNorm_2/scale"
    got = _flax_out(FlaxNormLast(), _flax_variables(mapping, model), jnp.asarray(X))
    np.testing.assert_allclose(got, _torch_out(model, torch.from_numpy(X)), atol=1e-5)


def test_call_order_on_the_meta_device_and_with_given_torch_inputs():
    model = _randomized(NormFirst())
    expected = automatic_mapping(model, FlaxNormLast(), jnp.asarray(X))
    with torch.device("meta"):
        meta = NormFirst()
    shapes = jax.ShapeDtypeStruct((2, 8), jnp.float32)
    assert automatic_mapping(meta, FlaxNormLast(), shapes) == expected
    assert automatic_mapping(model, FlaxNormLast(), shapes,
                             torch_inputs=torch.from_numpy(X)) == expected
    assert automatic_mapping(model, FlaxNormLast(), shapes, torch_inputs={"x": X}) == expected


def test_a_torch_forward_that_fails_falls_back_to_registration_order_and_says_so():
    with pytest.warns(ParityMappingWarning,
                      match=r"forward failed.*RuntimeError.*registration order"):
        mapping = automatic_mapping(NormFirst(), FlaxNormLast(), jnp.asarray(X),
                                    torch_inputs=torch.zeros(2, 5))
    assert mapping.rule_for("norm.weight", "torch").canonical == "LayerNorm_0/scale"


# --- 5. extra rules override ---------------------------------------------------------------


class TwoLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 8)
        self.fc2 = torch.nn.Linear(8, 8)

    def forward(self, x):
        return self.fc2(self.fc1(x))


class FlaxTwoDense(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(8, name="b")(nn.Dense(8, name="a")(x))


def test_extra_rules_override_the_automatic_pairing_of_their_keys():
    """The user says fc2 is Flax `b`; fc1 then pairs with the one Dense left, `a`."""
    extra = [Rule("b/kernel", "fc2.weight", "IO", transform=Transpose((1, 0))),
             Rule("b/bias", "fc2.bias", "O")]
    mapping = automatic_mapping(TwoLinear(), FlaxTwoDense(), jnp.asarray(X), extra_rules=extra)
    assert mapping.rule_for("fc1.weight", "torch").canonical == "a/kernel"
    assert mapping.rule_for("fc2.weight", "torch") == extra[0]
    assert len(mapping.rules) == 4


# --- 3. rules and hints that name nothing ---------------------------------------------------


@pytest.mark.parametrize(("extra", "hints", "named"), [
    ([Rule("a/kernel", "fc3.weight", "IO", transform=Transpose((1, 0)))], [], "fc3.weight"),
    ([Rule("c/kernel", "fc1.weight", "IO", transform=Transpose((1, 0)))], [], "c/kernel"),
    ([Rule("layer{i}/kernel", "fc{i}.weight", "IO")], [], "layer{i}/kernel"),
    ([], [("fc9", "b")], "fc9"),
    ([], [("fc1", "dense")], "dense"),
], ids=["torch-key-typo", "canonical-typo", "pattern-matching-nothing", "hint-torch-typo",
        "hint-flax-typo"])
def test_a_rule_or_hint_that_names_nothing_is_an_error(extra, hints, named):
    with pytest.raises(MappingError, match=r"^\[parity\] ") as error:
        automatic_mapping(TwoLinear(), FlaxTwoDense(), jnp.asarray(X), extra_rules=extra,
                          hints=hints)
    assert named in str(error.value)


# --- 7. tensors of no known layer kind ------------------------------------------------------


class RMSNorm(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class RMSNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)
        self.norm = RMSNorm(8)
        self.scale = torch.nn.Parameter(torch.ones(4, 8))

    def forward(self, x):
        return self.norm(self.fc(x)) @ self.scale.T


class FlaxRMSNorm(nn.Module):
    @nn.compact
    def __call__(self, x):
        weight = self.param("weight", nn.initializers.ones, (x.shape[-1],))
        return x * jax.lax.rsqrt(jnp.mean(x**2, -1, keepdims=True) + 1e-6) * weight


class FlaxRMSNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones, (8, 4))
        return FlaxRMSNorm(name="norm")(nn.Dense(8, name="fc")(x)) @ scale


def test_tensors_of_no_known_kind_are_inferred_by_name_and_shape(tmp_path):
    model = _randomized(RMSNet())
    mapping = automatic_mapping(model, FlaxRMSNet(), jnp.asarray(X))
    norm, scale = mapping.rule_for("norm.weight", "torch"), mapping.rule_for("scale", "torch")
    assert (norm.canonical, norm.inferred) == ("norm/weight", True)
    assert scale.inferred and scale.transform == Transpose((1, 0))
    assert not mapping.rule_for("fc.weight", "torch").inferred
    assert any("norm.weight -> norm/weight" in line and "inferred" in line
               for line in mapping.describe())
    assert load_mapping(save_mapping(mapping, tmp_path / "m.json")) == mapping
    got = _flax_out(FlaxRMSNet(), _flax_variables(mapping, model), jnp.asarray(X))
    np.testing.assert_allclose(got, _torch_out(model, torch.from_numpy(X)), atol=1e-5)


class TwoScales(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.first = torch.nn.Parameter(torch.ones(4, 8))
        self.second = torch.nn.Parameter(torch.ones(4, 8))

    def forward(self, x):
        return x @ self.first.T + x @ self.second.T


class FlaxTwoScales(nn.Module):
    @nn.compact
    def __call__(self, x):
        left = self.param("left", nn.initializers.ones, (8, 4))
        right = self.param("right", nn.initializers.ones, (8, 4))
        return x @ left + x @ right


def test_an_ambiguous_tensor_is_an_error_whose_hint_has_the_transform():
    with pytest.raises(MappingError) as error:
        automatic_mapping(TwoScales(), FlaxTwoScales(), jnp.asarray(X))
    message = str(error.value)
    assert "first (4, 8)" in message and "params/left (8, 4)" in message
    assert "Rule('left', 'first', 'IO', transform=Transpose(perm=(1, 0)))" in message


# --- 6. tied weights ------------------------------------------------------------------------


class TiedLM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(11, 8)
        self.norm = torch.nn.LayerNorm(8)
        self.head = torch.nn.Linear(8, 11, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        return self.head(self.norm(self.embed(ids)))


class FlaxTiedLM(nn.Module):
    @nn.compact
    def __call__(self, ids):
        embed = nn.Embed(11, 8, name="embed")
        return embed.attend(nn.LayerNorm(epsilon=1e-5, name="norm")(embed(ids)))


IDS = np.array([[1, 5, 3, 10], [0, 2, 9, 4]], dtype=np.int32)


def test_a_tied_weight_is_one_flax_variable_and_a_tied_alias():
    model = _randomized(TiedLM())
    mapping = automatic_mapping(model, FlaxTiedLM(), jnp.asarray(IDS))
    alias = mapping.rule_for("head.weight", "torch")
    assert alias.collection is None and alias.layout == "tied:embed.weight"
    variables = _flax_variables(mapping, model)
    assert sorted(variables["params"]) == ["embed", "norm"]
    got = _flax_out(FlaxTiedLM(), variables, jnp.asarray(IDS))
    np.testing.assert_allclose(got, _torch_out(model, torch.from_numpy(IDS)), atol=1e-5)
    state = {key: value.numpy() for key, value in model.state_dict().items()}
    back = mapping.canonical_to_torch(mapping.torch_to_canonical(state)[0])
    assert sorted(back) == sorted(state)
    assert np.array_equal(back["head.weight"], state["embed.weight"])


# --- 1, 2, 8. transformers' models ----------------------------------------------------------


def _transformers():
    from pytest_parity.torchvision_compat import import_torchvision

    with contextlib.suppress(ImportError):  # transformers imports it; a CPU torch needs help
        import_torchvision()
    return pytest.importorskip("transformers")


def _tokens(with_positions):
    ids = np.random.RandomState(1).randint(0, 99, size=(2, 7)).astype(np.int32)
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    if with_positions:
        inputs["position_ids"] = np.broadcast_to(np.arange(7, dtype=np.int32), ids.shape).copy()
    return inputs


def _case(name):
    t = _transformers()
    small = {"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64,
             "num_attention_heads": 4}
    if name == "bert":
        cfg = t.BertConfig(vocab_size=99, max_position_embeddings=64, **small)
        inputs = {**_tokens(False), "token_type_ids": np.zeros((2, 7), np.int32)}
        return t.BertModel(cfg), t.FlaxBertModel(cfg), (), inputs
    if name == "gpt2":
        cfg = t.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=99, n_positions=64)
        return t.GPT2Model(cfg), t.FlaxGPT2Model(cfg), (), _tokens(True)
    if name == "gpt2_lm_head":
        cfg = t.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=99, n_positions=64)
        return t.GPT2LMHeadModel(cfg), t.FlaxGPT2LMHeadModel(cfg), (), _tokens(True)
    if name == "llama":
        cfg = t.LlamaConfig(vocab_size=99, max_position_embeddings=64, num_key_value_heads=4,
                            **small)
        return t.LlamaModel(cfg), t.FlaxLlamaModel(cfg), (), _tokens(True)
    cfg = t.ViTConfig(image_size=16, patch_size=4, num_channels=3, **small)
    images = np.random.RandomState(2).normal(size=(2, 16, 16, 3)).astype(np.float32)
    return t.ViTModel(cfg), t.FlaxViTModel(cfg), (images,), {}


@pytest.mark.parametrize("name", ["bert", "gpt2", "gpt2_lm_head", "llama", "vit"])
def test_transformers_ports_pair_without_rules_or_hints(name):
    torch_model, flax_model, args, kwargs = _case(name)
    torch_model = _randomized(torch_model.float())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParityMappingWarning)  # names over call order: fine
        mapping = automatic_mapping(torch_model, flax_model, *args, deterministic=True,
                                    **kwargs)
    variables = _flax_variables(mapping, torch_model)
    torch_args = [torch.from_numpy(a.transpose(0, 3, 1, 2).copy()) for a in args]
    expected = _torch_out(torch_model, *torch_args,
                          **{k: torch.from_numpy(v) for k, v in kwargs.items()})
    got = _flax_out(flax_model.module, variables, *args, deterministic=True, **kwargs)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_gpt2_conv1d_pairs_as_a_linear_kept_in_its_layout():
    torch_model, flax_model, _, kwargs = _case("gpt2")
    mapping = automatic_mapping(torch_model, flax_model, deterministic=True, **kwargs)
    rule = mapping.rule_for("h.0.attn.c_attn.weight", "torch")
    assert rule.canonical == "h/0/attn/c_attn/kernel"  # FlaxConv1D: kernel (out, in)
    assert rule.transform == Transpose((1, 0)) and not rule.inferred


class Conv1DNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        from transformers.pytorch_utils import Conv1D

        self.proj = Conv1D(6, 8)  # weight (in, out): a Flax Dense kernel as it is

    def forward(self, x):
        return self.proj(x)


def test_conv1d_pairs_with_a_dense_without_a_transpose():
    _transformers()
    model = _randomized(Conv1DNet())
    module = nn.Dense(6)
    mapping = automatic_mapping(model, module, jnp.asarray(X))
    rule = mapping.rule_for("proj.weight", "torch")
    assert rule.canonical == "kernel" and rule.transform == Identity()
    got = _flax_out(module, _flax_variables(mapping, model), jnp.asarray(X))
    np.testing.assert_allclose(got, _torch_out(model, torch.from_numpy(X)), atol=1e-5)
