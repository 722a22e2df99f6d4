"""The seven porting bugs of a Llama decoder (tests/support/llama_bugs.py), each injected into
the zoo's NNX port: the decoding check fails, names the first divergent step, and localizes
it. Each injection is checked to change the port's decoded logits in tests/zoo/test_llama.py.

Where each is found (32 steps, the golden prompts, float32; the same steps and modules in
bfloat16, measured):
- forward bugs, at step 0 (the prompt's call), by the trace of that call without a cache:
  rotary pairing interleaved, kv heads tiled, causal mask off by one -> layer 0's self_attn;
  RMSNorm by (1 + w) -> layer 0's input_layernorm;
- cache bugs, by the port's cached step against its own call over the sequence: the cache
  written one position late (step 0) and the causal mask off by one -> layer 0's self_attn
  parts on inputs that agree; a rotary offset not advanced (step 2) and positions that ignore
  the padding (step 1) -> the step is given other position_ids than the call over everything
  (the sampler's positions: no module parts on inputs that agree).
"""

import pytest

from models.decoding_golden import STEPS, golden_prompts
from tests.support.requirements import require

require("transformers", "transformers is not installed: pip install -e '.[text]'")

# A catalogue of failures, not the main job's parity cases (2-5 s each: every failure is
# diagnosed, its step's call traced and the port's cached step followed through its modules).
pytestmark = [pytest.mark.zoo_all, pytest.mark.slow]

SELF_ATTN = ("first divergent module: torch model.layers.0.self_attn <-> flax "
             "model/layers/0/self_attn")
STEP_PARTS = "flax side, step {step}: the cached step parts from one call over the sequence " \
             "first at module model/layers/0/self_attn"
STEP_POSITIONS = "flax side, step {step}: the cached step is given other inputs than one call " \
                 "over the sequence: position_ids of the model"
# bug: (its first divergent step, what the failure says that localizes it)
FOUND = {
    "rotary_interleaved": (0, SELF_ATTN),
    "kv_heads_tiled": (0, SELF_ATTN),
    "causal_mask_off_by_one": (0, SELF_ATTN),
    "rms_norm_one_plus_weight": (0, "first divergent module: torch "
                                    "model.layers.0.input_layernorm <-> flax "
                                    "model/layers/0/input_layernorm"),
    "cache_written_late": (0, STEP_PARTS.format(step=0)),
    "rotary_not_advanced": (2, STEP_POSITIONS.format(step=2)),
    "positions_ignore_padding": (1, STEP_POSITIONS.format(step=1)),
}


def test_every_bug_of_the_catalogue_is_here():
    from tests.support.llama_bugs import BUGS

    assert set(FOUND) == set(BUGS)


@pytest.mark.parity(devices=["cpu"], dtypes=["float32", "bfloat16"])
@pytest.mark.parametrize("bug", sorted(FOUND))
def test_a_decoding_bug_fails_at_its_step_and_is_localized(parity_pair, bug):
    from models.llama.decoding import LlamaDecoding
    from pytest_parity.decoders import Decoding, TransformersTorch
    from tests.support.llama_bugs import llama_bug

    step, localized = FOUND[bug]
    pair = parity_pair("llama")
    ids, mask, _ = golden_prompts("llama")
    with llama_bug(bug), pytest.raises(AssertionError) as failure:
        # Its own decoders: the pair's are jitted once and kept, traced without the bug.
        pair.assert_decoding_close(ids, mask, steps=STEPS,
                                   decoding=Decoding(TransformersTorch(), LlamaDecoding()))
    text = str(failure.value)
    assert f"the first divergent step is {step} (of {STEPS}" in text
    assert localized in text
