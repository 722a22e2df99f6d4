"""The decoding check on transformers' GPT-2 against its Flax GPT-2 (pair_of, a tiny model):
what it compares, what it records, how it fails and what a failure names."""

import numpy as np
import pytest

from models.decoding_golden import left_padded
from pytest_parity.compare import records
from pytest_parity.decoders import TransformersFlax
from pytest_parity.errors import ParityError
from tests.support.gpt2_pair import gpt2_pair
from tests.support.requirements import require

require("transformers", "transformers is not installed: pip install -e '.[text]'")
torch = pytest.importorskip("torch")

VOCAB = 211


@pytest.fixture(scope="module")
def gpt2():
    return gpt2_pair()


class PositionsStuck(TransformersFlax):
    """A Flax sampler that forgets to advance the position of its cached steps."""

    def step(self, model, state, tokens):
        logits, state = super().step(model, state, tokens)
        return logits, {**state, "next": state["next"] - 1}


class CacheOneLate(TransformersFlax):
    """A Flax sampler whose step feeds the token one position after the prompt's end."""

    def start(self, model, input_ids, attention_mask, max_length):
        logits, state = super().start(model, input_ids, attention_mask, max_length)
        return logits, {**state, "next": state["next"] + 1}


def test_a_correct_port_passes_and_records_every_step(gpt2):
    ids, mask = left_padded(VOCAB)
    with records.collecting() as found:
        result = gpt2.assert_decoding_close(ids, mask, steps=8)
    assert result.passed and result.first_divergent_step is None
    assert result.tokens.shape == (3, 8)
    record = found[-1]
    assert record.kind == "decoding" and record["pair"] == "gpt2-tiny"
    assert [step["step"] for step in record["steps"]] == list(range(8))
    assert record["tokens"] == result.tokens.tolist()
    assert {leaf.path for leaf in result.comparison.leaves} >= {
        "logits/step_00", "logits/step_07", "cache/transformer.h.0.attn.key",
        "cache/transformer.h.1.attn.value"}
    assert set(record["consistency"]) == {"torch", "flax"}


def test_the_tokens_decoded_are_torchs_greedy_choice(gpt2):
    """The same tokens as transformers' own generate on the torch side (a plain copy of the
    model: the pair's is called with its torch_call, use_cache=False)."""
    from models.gpt2 import config, transformers

    ids, mask = left_padded(VOCAB)
    result = gpt2.assert_decoding_close(ids, mask, steps=6)
    plain = transformers().GPT2LMHeadModel(config()).eval()
    plain.load_state_dict(gpt2.torch_model.state_dict())
    with torch.no_grad():
        generated = plain.generate(
            torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), max_new_tokens=6,
            do_sample=False, pad_token_id=0)
    np.testing.assert_array_equal(result.tokens, generated[:, ids.shape[1]:].numpy())


def test_a_position_not_advanced_fails_at_its_step_and_is_followed_to_its_module(gpt2):
    from pytest_parity.decoders import Decoding, TransformersTorch

    ids, mask = left_padded(VOCAB)
    with pytest.raises(AssertionError) as failure:
        gpt2.assert_decoding_close(ids, mask, steps=6,
                                   decoding=Decoding(TransformersTorch(), PositionsStuck()))
    text = str(failure.value)
    assert "the first divergent step is 2" in text
    assert "cache consistency, flax: step 2 is the first" in text
    assert "flax side, step 2: the cached step is given other inputs than one call over the " \
           "sequence: position_ids of the model" in text


def test_positions_one_late_fail_at_the_first_cached_step(gpt2):
    from pytest_parity.decoders import Decoding, TransformersTorch

    ids, mask = left_padded(VOCAB)
    with pytest.raises(AssertionError, match="the first divergent step is 1 "):
        gpt2.assert_decoding_close(ids, mask, steps=4,
                                   decoding=Decoding(TransformersTorch(), CacheOneLate()))


@pytest.mark.parametrize(("ids", "mask", "said"), [
    (np.zeros((3,), np.int64), None, "input_ids must be integer token ids of shape"),
    (np.zeros((2, 4), np.float32), None, "input_ids must be integer token ids"),
    (np.zeros((2, 4), np.int64), np.ones((2, 3), np.int64), "attention_mask must be 0/1"),
    (np.zeros((2, 4), np.int64), np.array([[1, 1, 1, 0], [1, 1, 1, 1]]),
     r"rows \[0\] end in padding; .* pad prompts on the left"),
])
def test_bad_prompts_are_refused_before_anything_runs(gpt2, ids, mask, said):
    with pytest.raises(ParityError, match=said) as refused:
        gpt2.assert_decoding_close(ids, mask, steps=2)
    assert str(refused.value).startswith("[parity] decoding 'gpt2-tiny'")


def test_a_pair_without_decoders_says_how_to_declare_them(gpt2):
    from dataclasses import replace

    from pytest_parity.run.decoding_check import decoding_of

    class Other:
        pair = replace(gpt2.pair, decoding=None)
        name = "other"
        torch_model = torch.nn.Linear(2, 2)
        flax_model = object()

    with pytest.raises(ParityError, match=r"Pair\(decoding=Decoding\(torch=..., flax=...\)\)"):
        decoding_of(Other())


def test_cache_shapes_are_a_modules_own_even_where_its_id_was_anothers(monkeypatch):
    """The Flax decoder keeps each module's cache shapes by the module's id; an id is reused
    once its object is gone. A float32 module given the id a bfloat16 one had read that
    module's bfloat16 cache (a CI run: "dynamic_update_slice ... got bfloat16, float32" in
    the zoo's GPT-2 decoding, after the streamed tests had made and dropped GPT-2 modules)."""
    import jax
    import jax.numpy as jnp

    from pytest_parity import decoders

    monkeypatch.setattr(decoders, "id", lambda _: 7, raising=False)  # every id the same
    module = gpt2_pair().flax_model
    decoder = TransformersFlax()
    low = decoder._cache_shapes(module.clone(dtype=jnp.bfloat16), 3, 20)
    wide = decoder._cache_shapes(module.clone(dtype=jnp.float32), 3, 20)
    dtypes = {leaf.dtype for leaf in jax.tree_util.tree_leaves(wide)
              if leaf.dtype != jnp.int32}
    assert low is not wide and dtypes == {jnp.dtype("float32")}
