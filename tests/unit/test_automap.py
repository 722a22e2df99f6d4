"""The automatic mapping: the same rules as the hand-written tables, helpful when ambiguous."""

import time

import pytest

from pytest_parity import automatic_mapping, load_mapping, registry, save_mapping
from pytest_parity.mapping import MappingError, Rule

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
nn = pytest.importorskip("flax.linen")
jnp = jax.numpy


def _meta(build):
    with torch.device("meta"):
        return build()


def _images(size=64):
    return jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)


def test_resnet50_without_its_table_gets_the_tables_rules():
    pair = registry.get("resnet50")
    started = time.perf_counter()
    mapping = automatic_mapping(_meta(pair.torch_model), pair.flax_model(), _images())
    seconds = time.perf_counter() - started
    keys = list(_meta(pair.torch_model).state_dict())
    assert mapping.correspondence(keys) == pair.mapping.correspondence(keys)
    assert len(keys) == 320
    print(f"automatic mapping of ResNet-50: {seconds:.2f} s")  # the benchmark times it


def test_vit_gets_the_tables_rules_with_its_bare_parameters_as_extra_rules():
    pair = registry.get("vit_ti_16")
    extra = [Rule("class_token", "class_token", "NTC"),
             Rule("encoder/pos_embedding", "encoder.pos_embedding", "NTC")]
    mapping = automatic_mapping(_meta(pair.torch_model), pair.flax_model(), _images(224),
                                extra_rules=extra)
    keys = list(_meta(pair.torch_model).state_dict())
    assert mapping.correspondence(keys) == pair.mapping.correspondence(keys)


def test_bare_parameters_are_paired_by_name_and_shape_and_marked_inferred():
    """ViT's class token and position embedding are in no layer of a known kind: paired by
    name and shape (once a MappingError asking for hand-written rules), each rule marked as
    inferred in describe()."""
    pair = registry.get("vit_ti_16")
    mapping = automatic_mapping(_meta(pair.torch_model), pair.flax_model(), _images(224))
    inferred = {rule.torch: rule.canonical for rule in mapping.rules if rule.inferred}
    assert inferred == {"class_token": "class_token",
                        "encoder.pos_embedding": "encoder/pos_embedding"}
    described = [line for line in mapping.describe() if "class_token" in line]
    assert described and all("inferred" in line for line in described)


class TorchBlock(torch.nn.Module):
    """A residual block whose projection shortcut is registered last (as torchvision does)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.downsample = torch.nn.Conv2d(4, 8, 1)

    def forward(self, x):
        return self.conv2(self.conv1(x)) + self.downsample(x)


class FlaxBlock(nn.Module):
    """The same block, calling its shortcut first and naming it differently."""

    @nn.compact
    def __call__(self, x):
        shortcut = nn.Conv(8, (1, 1), name="shortcut")(x)
        y = nn.Conv(8, (3, 3), padding=1, name="conv1")(x)
        return nn.Conv(8, (3, 3), padding=1, name="conv2")(y) + shortcut


def test_an_ambiguous_pair_fails_with_both_sides_and_a_hint():
    with pytest.raises(MappingError) as error:
        automatic_mapping(TorchBlock(), FlaxBlock(), jax.ShapeDtypeStruct((1, 8, 8, 4),
                                                                          jnp.float32))
    assert str(error.value) == (
        "[parity] automatic mapping auto:TorchBlock->FlaxBlock: cannot pair the two models "
        "unambiguously\n"
        "  conv: torch conv1 and Flax shortcut are next in order but differ: torch "
        "conv1.weight (8, 4, 3, 3) -> (3, 3, 4, 8), but Flax params/shortcut/kernel is "
        "(1, 1, 4, 8)\n"
        "    unpaired torch: conv1 (Conv2d: weight (8, 4, 3, 3), bias (8,))\n"
        "    unpaired torch: conv2 (Conv2d: weight (8, 8, 3, 3), bias (8,))\n"
        "    unpaired torch: downsample (Conv2d: weight (8, 4, 1, 1), bias (8,))\n"
        "    unpaired Flax: shortcut (Conv: bias (8,), kernel (1, 1, 4, 8))\n"
        "    unpaired Flax: conv1 (Conv: bias (8,), kernel (3, 3, 4, 8))\n"
        "    unpaired Flax: conv2 (Conv: bias (8,), kernel (3, 3, 8, 8))\n"
        "    resolve it by name: hints=[('conv1', 'shortcut')]")


def test_a_hint_resolves_the_ambiguity():
    mapping = automatic_mapping(TorchBlock(), FlaxBlock(),
                                jax.ShapeDtypeStruct((1, 8, 8, 4), jnp.float32),
                                hints=[("downsample", "shortcut")])
    assert mapping.correspondence(["downsample.weight", "conv1.weight"]) == {
        "downsample.weight": mapping.correspondence(["downsample.weight"])["downsample.weight"],
        "conv1.weight": mapping.correspondence(["conv1.weight"])["conv1.weight"]}
    assert mapping.rule_for("downsample.weight", "torch").canonical == "shortcut/kernel"
    assert mapping.rule_for("conv1.weight", "torch").canonical == "conv1/kernel"


def test_a_mapping_prints_saves_and_loads_unchanged(tmp_path):
    pair = registry.get("vit_ti_16")
    mapping = pair.mapping
    path = save_mapping(mapping, tmp_path / "vit.json")
    assert load_mapping(path) == mapping
    lines = mapping.describe()
    assert lines[0] == f"mapping vit_ti_16: {len(mapping.rules)} rules"
    assert ("  encoder.layers.encoder_layer_{i}.self_attention.in_proj_weight -> "
            "encoder/layer{i}/attention/query/kernel, encoder/layer{i}/attention/key/kernel, "
            "encoder/layer{i}/attention/value/kernel [IHD, params] Chain(steps=(Transpose("
            "perm=(1, 0)), Reshape(axis=1, sizes=(3, 64)))) split Split(axis=0, parts=3)"
            ) in lines
    with pytest.raises(MappingError, match=r"bad\.json: not a readable mapping file \(format None"):
        (tmp_path / "bad.json").write_text("{}")
        load_mapping(tmp_path / "bad.json")


def test_num_batches_tracked_is_handled_not_fatal():
    mapping = automatic_mapping(torch.nn.BatchNorm2d(3), nn.BatchNorm(use_running_average=True),
                                jax.ShapeDtypeStruct((1, 4, 4, 3), jnp.float32))
    rule = mapping.rule_for("num_batches_tracked", "torch")
    assert rule is not None and rule.collection is None


def test_every_kind_has_its_rules():
    from pytest_parity.mapping.automatic import FLAX_KINDS, RULES_OF_KIND, TORCH_KINDS

    assert set(TORCH_KINDS.values()) == set(FLAX_KINDS.values()) == set(RULES_OF_KIND)
