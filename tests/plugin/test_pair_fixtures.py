"""`parity_pair` and `parity_checkpoint` on a registered pair without a checkpoint factory
(tests/support/tinynet.py): weights from the torch model's init under the seed, both models
on the case's device and dtype, cached per session."""

import numpy as np
import pytest

from pytest_parity import assert_close
from tests.support.tinynet import TINYNET

pytest.importorskip("torch")
pytest.importorskip("flax")

# The default tolerances hold: bfloat16 through conv, BatchNorm, mean and dense measured
# max abs 1.95e-3 (margin 0.13 of rtol 1.6e-2, atol 1e-2); float32 3e-8.
IMAGES = np.random.RandomState(0).normal(0, 1, (2, 3, 8, 8)).astype(np.float32)


@pytest.mark.parity(dtypes=["float32", "bfloat16"])
def test_pair_is_on_the_case_device_and_dtype(parity_pair, parity_device, parity_dtype):
    import jax
    import torch

    pair = parity_pair(TINYNET.name)
    assert (pair.device, pair.dtype) == (parity_device, parity_dtype)
    assert {p.dtype for p in pair.torch_model.parameters()} == {getattr(torch, parity_dtype)}
    assert not pair.torch_model.training
    dtypes = {str(leaf.dtype) for leaf in jax.tree_util.tree_leaves(pair.flax_variables)}
    assert dtypes == {parity_dtype}
    assert parity_pair(TINYNET.name) is pair  # cached
    torch_out, flax_out = pair.torch_forward(IMAGES), pair.flax_forward(IMAGES)
    assert str(torch_out.dtype) == str(flax_out.dtype) == parity_dtype
    assert_close(flax_out, torch_out, name="tinynet logits")


@pytest.mark.parity(dtypes=["float32"])
def test_checkpoint_comes_from_the_torch_init_under_the_seed(parity_checkpoint, parity_pair,
                                                            parity_seed):
    import torch

    checkpoint = parity_checkpoint(TINYNET.name)
    assert checkpoint.architecture == "tinynet"
    assert f"torch.manual_seed({parity_seed})" in checkpoint.source
    torch.manual_seed(parity_seed)
    expected = TINYNET.torch_model().state_dict()["fc.weight"].numpy()
    assert np.array_equal(parity_pair(TINYNET.name).torch_model.fc.weight.detach().numpy(),
                          expected)
    torch.manual_seed(parity_seed + 1)
    assert not np.array_equal(TINYNET.torch_model().state_dict()["fc.weight"].numpy(), expected)
