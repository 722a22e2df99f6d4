"""torchvision against the native Flax zoo on seeded checkpoints: every zoo model, in each
dtype and on each device the run selects (`--parity-dtype`, `--parity-device`).

Tolerances come from the registry (models/registry.py): float32 keeps the defaults (rtol
1.3e-6, atol 1e-5); measured here at batch 2 the max abs logit difference is 5.2e-6 for
ResNet-50 (logits up to 7.7) and 4.4e-6 for ViT-B/16 (logits up to 3.5), margin ~0.4, while
the deliberate mistakes in test_mutations_detected.py exceed it 80x to 2e5x. bfloat16 is judged
by its error budget (pytest_parity.compare.budget): no pair carries a bfloat16 tolerance.
"""

import numpy as np
import pytest

from models.registry import PARAM_COUNTS
from tests.support.ties import assert_same_top


@pytest.mark.parity(dtypes=["float32", "bfloat16"])
@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_torch_and_flax_logits_agree(parity_pair, parity_dtype, random_images, name):
    pair = parity_pair(name)
    result = pair.assert_close(random_images, name=f"{name} logits")  # diagnosed on failure
    torch_logits, flax_logits = result.torch, result.flax
    assert str(torch_logits.dtype) == str(flax_logits.dtype) == parity_dtype
    assert 1.0 < np.abs(torch_logits.astype(np.float32)).max() < 50.0, \
        "seeded logits should be ImageNet-like"
    # classes within the comparison's tolerance of each other may swap (a bfloat16 step is
    # 0.0625 at logits of 10; ViT-B/16's top two are 0.066 apart in one row)
    for k in (1, 5):
        assert_same_top(flax_logits, torch_logits, result.comparison.leaves[0], k)
