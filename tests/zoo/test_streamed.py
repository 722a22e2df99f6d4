"""Streamed parity (`assert_streamed_close`): the zoo's pairs block by block within a memory
bound, against the same pairs checked whole in memory.

The small Llama (NNX port; 2 layers of 49 KB of float32 weights each), ResNet-18 and ViT-Ti/16
(Linen ports), and transformers' GPT-2 against its own Flax GPT-2 (a port this project did not
write, its head tied to its embeddings) give the same verdict streamed as loaded whole, in
float32 and bfloat16 (each block judged by its own budget there), over several input draws; a
bug put into one decoder layer of the port fails that layer's block and the diagnosis names
the module inside it. Each streamed case takes 2-8 s here (measured: llama 2.8 s float32,
4.7 s bfloat16; resnet18 2.5 s, 7.8 s; vit_ti_16 1.6 s, 3.7 s).
"""

from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from pytest_parity import assert_streamed_close, registry
from pytest_parity.checkpoint import save
from pytest_parity.compare import records
from pytest_parity.registry import Pair
from pytest_parity.run import checkpoint_for, load_pair
from tests.support.requirements import require

require("transformers", "transformers is not installed: pip install -e '.[ports]'")

# name: the memory bound that splits the pair into its blocks (a Llama: each decoder layer
# whole in bfloat16, its projections apart in float32), the input draws, the dtypes. gpt2 is
# transformers' own Flax port, its head tied to its token embeddings (kept loaded). Linen in
# bfloat16 is ViT's (ResNet-18's takes 10 s). More draws: the figures in docs/streamed.md.
CASES = {"llama": ("60KB", (0, 1), ("float32", "bfloat16")),
         "gpt2": ("100KB", (0, 1), ("float32", "bfloat16")),
         "resnet18": ("3MB", (0,), ("float32",)),
         "vit_ti_16": ("2MB", (0,), ("float32", "bfloat16"))}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    made = {}

    def checkpoint(name):
        if name not in made:
            made[name] = checkpoint_for(registry.get(name), 0, tmp_path_factory.mktemp(name))
        return made[name]
    return checkpoint


@pytest.mark.parametrize(("name", "dtype"), [(name, dtype) for name in sorted(CASES)
                                             for dtype in CASES[name][2]])
def test_streamed_gives_the_in_memory_verdict(name, dtype, checkpoints):
    """Streamed and whole, the same pass on every draw; every block within the bound where
    it could be split, and the streamed output as close to torch's as the whole check's."""
    pair, checkpoint = registry.get(name), checkpoints(name)
    memory, draws, _ = CASES[name]
    whole = load_pair(pair, checkpoint, "cpu", dtype)
    for draw in draws:
        inputs = pair.example_inputs(draw)
        streamed = assert_streamed_close(pair, inputs, checkpoint=checkpoint, memory=memory,
                                         dtype=dtype)
        in_memory = whole.assert_close(inputs)
        assert streamed.passed and in_memory.comparison.passed
        assert len(streamed.blocks) > 3
        if dtype == "float32":  # the same arithmetic, block by block or whole
            assert streamed.output.max_abs <= 2 * in_memory.comparison.max_abs + 1e-6


class _GeluMLP(nnx.Module):
    """A port's MLP computing GELU where Llama computes SiLU (one layer only)."""

    def __call__(self, x):
        return self.down_proj(jax.nn.gelu(self.gate_proj(x)) * self.up_proj(x))


def _one_layer_buggy(factory):
    def build():
        model = factory()
        mlp = model.model.layers[1].mlp
        mlp.__class__ = type("LlamaMLP", (_GeluMLP, type(mlp)), {})
        return model
    return build


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_bug_in_one_layer_is_found_in_its_block(dtype, checkpoints, tmp_path):
    """Layer 1's MLP computing GELU: the streamed check fails block model.layers.1 (every
    block before it passes) and the diagnosis inside it names its mlp; the check of the whole
    pair in memory fails too."""
    llama = registry.get("llama")
    pair = Pair("llama", llama.torch_model, _one_layer_buggy(llama.flax_model), llama.mapping,
                inputs=llama.inputs, torch_call=llama.torch_call, tolerances=llama.tolerances)
    path = save(tmp_path / "llama.h5", checkpoints("llama"))
    with records.collecting() as found, pytest.raises(AssertionError) as failure:
        assert_streamed_close(pair, llama.example_inputs(0), checkpoint=path, memory="160KB",
                              dtype=dtype)
    streamed = found[-1]["streamed"]
    # Each block on torch's inputs: the layer after the bug and the final norm pass.
    assert [b["torch"] for b in streamed["blocks"] if not b["passed"]] == ["model.layers.1"]
    assert streamed["first_failing_block"] == "model.layers.1"
    assert [b["torch"] for b in streamed["blocks"]] == [
        "model.embed_tokens", "model.layers.0", "model.layers.1", "model.norm", "lm_head"]
    text = str(failure.value)
    assert "the first failing block: torch model.layers.1 <-> flax model/layers/1" in text
    culprit = text.split("the first failing block")[1]
    assert "first divergent module: torch mlp <-> flax mlp" in culprit, culprit
    with pytest.raises(AssertionError):
        load_pair(pair, checkpoints("llama"), "cpu", dtype).assert_close(llama.example_inputs(0))


def _flip(path: Path, key: str) -> None:
    import h5py

    with h5py.File(path, "r+") as h5:
        dataset = h5[f"{h5.attrs['architecture']}/{key}"]
        values = dataset[...]
        values.flat[0] += 1.0
        dataset[...] = values


def test_a_damaged_checkpoint_is_refused_after_streaming(checkpoints, tmp_path):
    """A value changed in the file after it was written: every block is compared on what the
    file holds now, and the check then fails on the content digest, naming the file."""
    from pytest_parity.errors import CheckpointError

    llama = registry.get("llama")
    path = save(tmp_path / "llama.h5", checkpoints("llama"))
    _flip(path, "model/layers/0/mlp/up_proj/kernel")
    with pytest.raises(CheckpointError, match=r"(?s)\[parity\].*llama.h5.*content digest"):
        assert_streamed_close(llama, llama.example_inputs(0), checkpoint=path,
                              memory="100KB")


def test_a_checkpoint_of_other_shapes_names_the_key_and_shapes(checkpoints, tmp_path):
    """A checkpoint whose token embeddings are half as wide as the model's: the first block
    read names its torch key and both shapes."""
    from pytest_parity.checkpoint import Checkpoint
    from pytest_parity.errors import CheckpointError

    llama, held = registry.get("llama"), checkpoints("llama")
    arrays = {**held.arrays, "model/embed_tokens/embedding": np.zeros((256, 32), np.float32)}
    path = save(tmp_path / "llama.h5", Checkpoint("llama", arrays, held.layouts))
    with pytest.raises(CheckpointError, match=r"model.embed_tokens.weight: shape \(256, 32\) "
                                              r"where the torch model has \(256, 64\)"):
        assert_streamed_close(llama, llama.example_inputs(0), checkpoint=path, memory="100KB")


@pytest.mark.parametrize(("name", "memory", "blocks"), [
    ("vit_ti_16", "1GiB", 1), ("gpt2", "1GiB", 1), ("vit_ti_16", "100KB", 63)])
def test_whole_or_finely_split_the_verdict_is_the_same(name, memory, blocks, checkpoints):
    """At the default bound a small pair is one block (a Linen root run alone; GPT-2's tied
    embeddings with it); at 100 KB ViT's attention stays whole (nn.MultiheadAttention reads
    its out_proj's weight without calling it) and everything else is split."""
    pair = registry.get(name)
    result = assert_streamed_close(pair, pair.example_inputs(0), checkpoint=checkpoints(name),
                                   memory=memory)
    assert result.passed and len(result.blocks) == blocks
