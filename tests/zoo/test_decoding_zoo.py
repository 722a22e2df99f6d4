"""The zoo's decoder language models decode alike on both sides: 32 greedy steps from a batch
of three left-padded prompts of different lengths, each side with its own KV cache, in float32
and bfloat16 (the budget): every step's logits, the tokens and the caches compared, each side's
cached steps against its own call over the sequence (pytest_parity.run.decoding); and the
decoded tokens held to the golden tokens of the original (transformers' torch model)."""

import numpy as np
import pytest

from models.decoding_golden import CHECKPOINT_SEED, STEPS, golden_outputs, golden_prompts
from tests.support.requirements import require

require("transformers", "transformers is not installed: pip install -e '.[text]'")

DECODERS = ["gpt2", "llama"]


@pytest.mark.parity(devices=["cpu"], dtypes=["float32", "bfloat16"])
@pytest.mark.parametrize("name", DECODERS)
def test_decoding_parity(parity_pair, name):
    """Margins measured here over 8 prompt draws (the worst step's logits or cache leaf):
    gpt2 float32 0.21-0.33 (its tolerance, twice the defaults), bfloat16 0.51-0.62 of the
    budget, 0-4 ties a draw; llama (seed 0's draw) float32 0.37, its cache consistency torch
    0.27 and flax 0.33, bfloat16 0.44 of the budget, 3 ties."""
    pair = parity_pair(name)
    ids, mask, _ = golden_prompts(name)
    result = pair.assert_decoding_close(ids, mask, steps=STEPS)
    assert result.tokens.shape == (3, STEPS)
    assert result.first_divergent_step is None


@pytest.mark.parity(devices=["cpu"], dtypes=["float32"])  # the goldens are float32 CPU tokens
@pytest.mark.parametrize("name", DECODERS)
def test_decoded_tokens_match_the_golden(parity_pair, parity_seed, parity_golden, name):
    """The torch side's tokens are the golden file's; the Flax side's own choices are too, but
    where a step was a tie."""
    if parity_seed != CHECKPOINT_SEED:
        pytest.skip(f"the golden tokens are decoded from seed {CHECKPOINT_SEED}'s weights; "
                    f"this run uses --parity-seed={parity_seed}")
    pair = parity_pair(name)
    outputs, manifest = golden_outputs(name, pair.torch_model, pair.checkpoint)
    parity_golden.check(outputs, name=name, manifest=manifest)
    golden = parity_golden.read(name).outputs["tokens"]
    ids, mask, _ = golden_prompts(name)
    result = pair.assert_decoding_close(ids, mask, steps=STEPS)
    np.testing.assert_array_equal(result.tokens, golden)
    tied = {(tie.row, tie.step) for tie in result.ties}
    differing = set(zip(*np.nonzero(result.flax_tokens != golden), strict=True))
    assert differing <= tied
