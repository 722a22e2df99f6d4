"""The zoo's decoder language models decode alike on both sides: 32 greedy steps from a batch
of three left-padded prompts of different lengths, each side with its own KV cache, in float32
and bfloat16 (the budget), every step's logits, the tokens and the caches compared, each
side's cached steps against its own call over the sequence (pytest_parity.run.decoding).
Measured margins are in the test's docstring."""

import pytest

from pytest_parity import registry
from tests.support.prompts import left_padded
from tests.support.requirements import require

require("transformers", "transformers is not installed: pip install -e '.[text]'")

DECODERS = ["gpt2", "llama"]
STEPS = 32


@pytest.mark.parity(devices=["cpu"], dtypes=["float32", "bfloat16"])
@pytest.mark.parametrize("name", DECODERS)
def test_decoding_parity(parity_pair, name):
    """Measured here (margins: worst step's logits / each side's cache consistency):
    gpt2 float32 ...
    llama float32 0.37 / torch 0.27, flax 0.33 (caches 0.40); bfloat16 0.44 (the budget;
    caches 0.29), 3 ties."""
    pair = parity_pair(name)
    vocab = registry.get(name).inputs[0].high
    ids, mask = left_padded(vocab)
    result = pair.assert_decoding_close(ids, mask, steps=STEPS)
    assert result.tokens.shape == (3, STEPS)
    assert result.first_divergent_step is None
