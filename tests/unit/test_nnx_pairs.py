"""Flax NNX as a Flax side: a registered pair whose Flax model is an nnx.Module, built from
the checkpoint's shapes (no initializer runs), run jitted on the case's dtype, through the same
mapping as its Linen twin."""

import numpy as np
import pytest

from tests.support.tinynet import TINYNET, TINYNET_NNX, nnx_tinynet

pytest.importorskip("torch")
nnx = pytest.importorskip("flax.nnx")


def _loaded(pair, dtype="float32"):
    from pytest_parity.run import checkpoint_for, load_pair

    return load_pair(pair, checkpoint_for(pair, 0, None), "cpu", dtype)


def _images():
    return np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_an_nnx_pair_agrees_with_torch_as_its_linen_twin_does(dtype):
    nnx_pair, linen_pair = _loaded(TINYNET_NNX, dtype), _loaded(TINYNET, dtype)
    nnx_result = nnx_pair.assert_close(_images())
    linen_result = linen_pair.assert_close(_images())
    assert nnx_result.flax.dtype == np.dtype(linen_result.flax.dtype)
    assert np.array_equal(nnx_result.flax, linen_result.flax)  # the same computation


def test_an_nnx_port_with_a_bug_fails():
    import jax

    from pytest_parity.nnx_bridge import port

    loaded = _loaded(TINYNET_NNX)
    buggy = port(lambda: nnx_tinynet(epsilon=1e-1))
    loaded.flax_model, loaded.flax_apply = buggy, jax.jit(buggy.apply)
    with pytest.raises(AssertionError, match="tinynet_nnx"):
        loaded.assert_close(_images())


def test_no_initializer_runs_when_an_nnx_pair_is_loaded(monkeypatch):
    """The factory is called under nnx.eval_shape: its initializers see abstract arrays."""
    import jax

    seen = []

    def factory():
        module = nnx_tinynet()
        seen.append(isinstance(module.fc.kernel.get_value(), jax.core.Tracer))
        return module

    from pytest_parity.nnx_bridge import port

    wrapped = port(factory)
    assert seen == [True]
    assert wrapped.variable_shapes()["params/fc/kernel"] == ((4, 10), "float32")
    assert wrapped.variable_shapes()["batch_stats/bn1/var"] == ((4,), "float32")
