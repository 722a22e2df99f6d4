"""Which modules a streamed check loads together (its blocks), its memory bound as a user
writes it, the mesh it places the Flax side on, and the torch side built without weights."""

import pytest

from pytest_parity.errors import ParityError
from pytest_parity.mapping import Mapping, Rule
from pytest_parity.run.streamed_blocks import block_mapping, memory_bytes, plan_blocks
from pytest_parity.run.streamed_placement import Placement

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(("given", "expected"), [
    (1024, 1024), ("512", 512), ("2KB", 2000), ("1.5 MiB", 1572864), ("1GB", 10**9),
    ("3gib", 3 * 2**30)])
def test_memory_is_bytes_or_a_size(given, expected):
    assert memory_bytes(given) == expected


@pytest.mark.parametrize("given", ["lots", "-1MB", 0, "1 TB", True])
def test_a_memory_that_is_no_size_is_refused_saying_how_to_write_one(given):
    with pytest.raises(ParityError, match=r"\[parity\] memory=.*(bytes|positive)"):
        memory_bytes(given)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(100, 8)  # 3200 bytes
        self.layers = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))  # 288 each
        self.head = torch.nn.Linear(8, 100, bias=False)  # 3200

    def forward(self, x):
        x = self.embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


MAPPING = Mapping("net", (
    Rule("embed/embedding", "embed.weight", "NTC"),
    Rule("layers/{i}/kernel", "layers.{i}.weight", "IO"),
    Rule("layers/{i}/bias", "layers.{i}.bias", "C"),
    Rule("head/kernel", "head.weight", "IO")))


def test_a_module_over_the_bound_is_split_into_its_children_a_module_list_always():
    blocks, loose = plan_blocks(Net(), MAPPING, 4000)
    assert [(b.torch, b.flax, b.nbytes) for b in blocks] == [
        ("embed", "embed", 3200), ("layers.0", "layers/0", 288), ("layers.1", "layers/1", 288),
        ("layers.2", "layers/2", 288), ("head", "head", 3200)]
    assert blocks[1].canonical == ("layers/0/kernel", "layers/0/bias") and loose == ()
    whole, _ = plan_blocks(Net(), MAPPING, 10**6)
    assert [b.torch for b in whole] == [""]  # it fits: the model is one block


def test_inside_a_block_its_mapping_names_keys_from_the_block():
    blocks, _ = plan_blocks(Net(), MAPPING, 4000)
    inside = block_mapping(MAPPING, blocks[2])
    assert inside.correspondence(["weight", "bias"]) == {
        "weight": (("kernel",), "IO", "params", MAPPING.rules[1].transform, None),
        "bias": (("bias",), "C", "params", MAPPING.rules[2].transform, None)}


def test_a_block_no_flax_module_holds_alone_is_named():
    scattered = Mapping("net", (
        Rule("embed/embedding", "embed.weight", "NTC"),
        Rule("layers/{i}/kernel", "layers.{i}.weight", "IO"),
        Rule("biases/{i}", "layers.{i}.bias", "C"),  # a layer's bias kept apart on Flax's side
        Rule("head/kernel", "head.weight", "IO")))
    with pytest.raises(ParityError, match=r"\[parity\] streamed check: the torch module "
                                          r"layers.0 holds weights that no one Flax module"):
        plan_blocks(Net(), scattered, 4000)


def test_a_mesh_needs_its_partition_specs():
    with pytest.raises(ParityError, match=r"\[parity\] streamed check: give mesh= and "
                                          "shardings= together"):
        Placement("cpu", mesh=object())


def test_the_torch_side_is_built_without_weights_its_buffers_real():
    from pytest_parity.run.streamed_torch import empty_model

    class WithBuffer(Net):
        def __init__(self):
            super().__init__()
            self.register_buffer("scale", torch.arange(4.0), persistent=False)

    model = empty_model(WithBuffer, "bfloat16")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert model.scale.device.type == "cpu" and model.scale.dtype == torch.bfloat16
    assert model.scale.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert torch.nn.Linear(2, 2).weight.device.type == "cpu"  # only while it builds


def test_a_tied_parameter_is_loose_under_every_name_and_in_no_block():
    class Tied(Net):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(8, 100, bias=False)
            self.head.weight = self.embed.weight  # GPT-2's head is its token embeddings

    tied = Mapping("net", (*MAPPING.rules[:3],), ignored=("head.weight",))
    blocks, loose = plan_blocks(Tied(), tied, 500)
    assert [b.torch for b in blocks] == ["layers.0", "layers.1", "layers.2"]
    assert set(loose) == {"embed.weight", "head.weight"}


def test_a_wrapper_and_its_one_child_are_one_block_named_as_the_wrapper():
    class Wrapped(Net):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Sequential(torch.nn.Linear(8, 100, bias=False))
            self.layers = torch.nn.ModuleList([torch.nn.Linear(8, 8)])

    wrapped = Mapping("net", (*MAPPING.rules[:3], Rule("head/kernel", "head.0.weight", "IO")))
    blocks, _ = plan_blocks(Wrapped(), wrapped, 1000)
    # head.0 is split out of head (3200 > 1000), yet head holds the same weights: head, whose
    # Flax module the alignment pairs; layers.0 alone in its list stays layers.0 (a list is
    # never called)
    assert [(b.torch, b.flax) for b in blocks] == [
        ("embed", "embed"), ("layers.0", "layers/0"), ("head", "head")]
