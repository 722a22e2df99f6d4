"""The zoo's decoders over many prompt draws: a correct port passes 32 decoded steps whatever
the prompts and wherever rounding lands, in float32 and bfloat16.

Not in the default run (2-4 s a draw and dtype): `pytest tests/zoo/test_decoding_robustness.py
--robustness-seeds=16 --parity-dtype=float32,bfloat16 --parity-report=FILE` (the report keeps
each draw's margins and ties). Measured here, 16 draws (margins of the worst step's logits or
cache leaf; each side's cache consistency at most): llama float32 0.24-0.51 (consistency up to
0.54), bfloat16 0.41-0.73 with 37 ties; gpt2 float32 0.21-0.38 (0.30), bfloat16 0.51-0.65
with 35 ties. No draw failed.
"""

import pytest

from models.decoding_golden import STEPS, left_padded
from pytest_parity import registry
from tests.support.requirements import require
from tests.zoo.test_decoding_zoo import DECODERS

require("transformers", "transformers is not installed: pip install -e '.[text]'")

pytestmark = [pytest.mark.robustness, pytest.mark.zoo_all]


@pytest.mark.parity(devices=["cpu"], dtypes=["float32", "bfloat16"])
@pytest.mark.parametrize("name", DECODERS)
def test_decoding_agrees_on_every_prompt_draw(parity_pair, name, robustness_seed):
    ids, mask = left_padded(registry.get(name).inputs[0].high, seed=robustness_seed)
    result = parity_pair(name).assert_decoding_close(ids, mask, steps=STEPS,
                                                     name=f"{name} draw {robustness_seed}")
    assert result.first_divergent_step is None
