"""Running a side: inputs cast once on the host, layouts both ways, outputs back as numpy."""

import numpy as np
import pytest

from pytest_parity.layouts import Layout
from pytest_parity.run.sides import host_input, run_flax, run_torch

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")


def test_image_layout_moves_channels_last_and_back():
    nchw = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    nhwc = Layout.IMAGE.to_flax(nchw)
    assert nhwc.shape == (2, 4, 5, 3) == Layout.IMAGE.flax_shape(nchw.shape)
    assert nhwc.flags.c_contiguous and np.array_equal(nhwc, nchw.transpose(0, 2, 3, 1))
    assert np.array_equal(Layout.IMAGE.output_to_torch(nhwc, input_rank=4), nchw)
    logits = np.ones((2, 10))
    assert Layout.IMAGE.output_to_torch(logits, input_rank=4) is logits
    assert Layout.SAME.to_flax(logits) is logits and Layout.SAME.flax_shape((2, 10)) == (2, 10)


def test_floating_inputs_are_cast_once_and_integers_kept():
    values = np.random.default_rng(0).normal(size=(4, 8))  # float64
    assert str(host_input(values, "bfloat16").dtype) == "bfloat16"
    ids = np.arange(6, dtype=np.int64)
    assert host_input(ids, "bfloat16") is ids or host_input(ids, "bfloat16").dtype == np.int64


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_both_frameworks_get_the_same_bits(dtype):
    """An identity on each side returns the input each framework was given: the same values."""
    values = np.random.default_rng(1).normal(size=(2, 3, 4, 4))  # float64: rounds once
    torch_seen = run_torch(torch.nn.Identity(), values, "cpu", dtype)
    flax_seen = run_flax(jax.jit(lambda x: x), Layout.IMAGE.to_flax(values), "cpu", dtype,
                         layout=Layout.IMAGE)
    assert str(torch_seen.dtype) == str(flax_seen.dtype) == dtype
    assert np.array_equal(np.ascontiguousarray(torch_seen).view(np.uint8),
                          np.ascontiguousarray(flax_seen).view(np.uint8))


def test_outputs_come_back_as_numpy_trees():
    class Two(torch.nn.Module):
        def forward(self, x):
            return {"logits": x.sum(1), "features": [x, x * 2]}

    out = run_torch(Two(), np.ones((2, 3), np.float32), "cpu", "float32")
    assert isinstance(out["logits"], np.ndarray) and isinstance(out["features"][1], np.ndarray)
    assert np.array_equal(out["features"][1], np.full((2, 3), 2, np.float32))
