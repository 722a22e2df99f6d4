"""The big Llama (models/llama/big.py, the pair `llama_2gb`): its size, and its seeded
checkpoint, written tensor by tensor, at a small size of the same architecture: the mapping's
layouts and torch's shapes, both sides agreeing on it, the draw reproducible."""

from functools import partial

import h5py
import numpy as np
import pytest

from models.llama import big
from models.llama.mapping import llama_mapping
from pytest_parity import registry
from pytest_parity.checkpoint import checkpoint_to_flax, load
from pytest_parity.inputs import Input
from pytest_parity.nnx_bridge import port
from pytest_parity.registry import Pair
from tests.support.requirements import require

torch = pytest.importorskip("torch")
pytest.importorskip("flax")
require("transformers", "transformers is not installed: pip install -e '.[text]'")

SMALL = big.config(layers=4, hidden=64, intermediate=128, vocab=512, heads=4, kv_heads=2)


def _torch_side(arrays, settings):
    model = big.torch_model(settings)
    state = llama_mapping("small").canonical_to_torch(arrays)
    model.load_state_dict({key: torch.from_numpy(array) for key, array in state.items()},
                          strict=True)
    return model


def test_the_big_llama_is_2_1_gb_per_side_in_blocks_of_at_most_131_mb():
    with torch.device("meta"):  # shapes only
        model = big.torch_model()
    parameters = sum(p.numel() for p in model.parameters())
    assert (parameters, big.weight_bytes()) == (525_679_616, 2_102_718_464)
    assert 4 * parameters == big.weight_bytes()
    layer = sum(p.numel() for p in model.model.layers[0].parameters())
    assert 4 * layer == 47_194_112
    assert max(4 * np.prod(shape) for _, shape, _ in big.tensor_specs()) == 131_072_000


def test_the_pair_is_registered_but_in_no_zoo_list():
    from tests.conftest import FLAGSHIP

    pair = registry.get("llama_2gb")
    assert pair.checkpoint is None and "llama_2gb" not in FLAGSHIP
    assert [spec.name for spec in pair.inputs] == ["input_ids", "attention_mask",
                                                   "position_ids"]


def test_a_small_checkpoint_fits_torch_and_both_sides_agree_on_it(tmp_path):
    path = big.write_checkpoint(tmp_path / "small.h5", seed=3, settings=SMALL,
                                architecture="small")
    checkpoint = load(path)
    assert checkpoint.source == "seeded:3:big-llama-v1"
    specs = big.tensor_specs(SMALL)
    assert {name: (tuple(array.shape), checkpoint.layouts[name])
            for name, array in checkpoint.arrays.items()} == {
        name: (shape, layout) for name, shape, layout in specs}
    torch_model = _torch_side(checkpoint.arrays, SMALL)  # strict: every key, every shape
    pair = Pair("small_big_llama", partial(big.torch_model, SMALL),
                partial(big.nnx_model, SMALL), llama_mapping("small"), inputs=(
                    Input("input_ids", (2, 16), "int64", high=512),))
    variables = checkpoint_to_flax(checkpoint, pair)
    ids = np.random.default_rng(1).integers(0, 512, (2, 16))
    flax_logits = np.asarray(port(pair.flax_model).apply(variables, input_ids=ids)["logits"])
    with torch.no_grad():
        torch_logits = torch_model(input_ids=torch.from_numpy(ids)).logits.numpy()
    assert torch_logits.std() > 1.0  # spread, not near-uniform
    np.testing.assert_allclose(flax_logits, torch_logits, rtol=2.6e-6, atol=4e-5)


def test_the_draw_is_reproducible_tensor_by_tensor(tmp_path):
    first = load(big.write_checkpoint(tmp_path / "a.h5", seed=0, settings=SMALL))
    again = load(big.write_checkpoint(tmp_path / "b.h5", seed=0, settings=SMALL))
    other = load(big.write_checkpoint(tmp_path / "c.h5", seed=1, settings=SMALL))
    assert first.digest() == again.digest() != other.digest()
    index = [name for name, _, _ in big.tensor_specs(SMALL)].index("lm_head/kernel")
    np.testing.assert_array_equal(
        first.arrays["lm_head/kernel"],
        big.draw("lm_head/kernel", (64, 512), index, 0, SMALL["num_hidden_layers"]))


def test_a_cached_checkpoint_is_served_while_intact_and_the_seeds(tmp_path):
    path, written = big.cached_checkpoint(tmp_path, 0, SMALL)
    assert written is not None and big.checkpoint_problem(path, 0, SMALL) is None
    assert big.cached_checkpoint(tmp_path, 0, SMALL) == (path, None)  # served as it is

    assert big.checkpoint_problem(path, 1, SMALL) == (
        "its source is 'seeded:0:big-llama-v1', not 'seeded:1:big-llama-v1'")
    with h5py.File(path, "r+") as h5:  # one value changed in place: the digest tells
        h5["llama_2gb/lm_head/kernel"][0, 0] += 1.0
    assert big.checkpoint_problem(path, 0, SMALL) == "its content does not match its digest"
    again, written = big.cached_checkpoint(tmp_path, 0, SMALL)
    assert again == path and written is not None
    assert load(path).digest() == load(big.write_checkpoint(
        tmp_path / "fresh.h5", 0, settings=SMALL)).digest()

    path.write_bytes(b"not hdf5")
    assert big.checkpoint_problem(path, 0, SMALL)
    assert big.cached_checkpoint(tmp_path, 0, SMALL)[1] is not None


def test_streamed_at_a_small_size_gives_the_in_memory_verdict(tmp_path):
    """The big Llama's architecture at a size where both sides fit: checked streamed from its
    file, one decoder layer per block, and loaded whole, the same pass (the 2.1 GB size, which
    fits in neither, is the benchmark tests/benchmarks/test_streamed_memory.py)."""
    from pytest_parity import assert_streamed_close
    from pytest_parity.run import load_pair

    path = big.write_checkpoint(tmp_path / "small.h5", seed=0, settings=SMALL,
                                architecture="small")
    pair = Pair("small", partial(big.torch_model, SMALL), partial(big.nnx_model, SMALL),
                llama_mapping("small"), inputs=registry.get("llama_2gb").inputs[:2],
                torch_call={"use_cache": False},
                tolerances=registry.get("llama_2gb").tolerances)
    inputs = {"input_ids": np.random.default_rng(1).integers(0, 512, (2, 16)),
              "attention_mask": np.ones((2, 16), np.int64)}
    streamed = assert_streamed_close(pair, inputs, checkpoint=path, memory="160KB")
    whole = load_pair(pair, load(path), "cpu", "float32").assert_close(inputs)
    assert streamed.passed and whole.comparison.passed
    assert [b.block.torch for b in streamed.blocks][:3] == [
        "model.embed_tokens", "model.layers.0", "model.layers.1"]
    assert streamed.largest_block_bytes <= 160_000  # a layer 148 KB, the embeddings 131 KB
