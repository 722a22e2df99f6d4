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


def test_an_nnx_pair_is_made_in_each_dtype_once_and_each_load_computes_in_its_own():
    """The port in a dtype is kept (re-making it walked the whole graph at every load, 32-48 ms
    for ResNet-50); loads in another dtype get another port, every submodule in that dtype."""
    import jax.numpy as jnp

    first, again = _loaded(TINYNET_NNX, "bfloat16"), _loaded(TINYNET_NNX, "bfloat16")
    other = _loaded(TINYNET_NNX, "float32")
    assert first.flax_model is again.flax_model and other.flax_model is not first.flax_model
    for loaded, dtype in ((first, jnp.bfloat16), (other, jnp.float32)):
        dtypes = {module.dtype for _, module in nnx.iter_modules(loaded.flax_model.module)
                  if hasattr(module, "dtype")}
        assert dtypes == {jnp.dtype(dtype)}
    assert first.flax_forward(_images()).dtype == np.dtype(jnp.bfloat16)


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


def test_parity_convert_to_and_from_an_nnx_state_file_is_bit_exact(tmp_path):
    """.nnx.msgpack holds nnx.to_pure_dict(nnx.state(model)): loaded into a concrete NNX
    model by nnx.replace_by_pure_dict + nnx.update, it computes what the Linen pair does; back
    to canonical, every array is the original bit for bit."""
    from flax.serialization import msgpack_restore

    from pytest_parity.checkpoint import load, save
    from pytest_parity.checkpoint.convert_file import convert_file
    from pytest_parity.run import checkpoint_for

    checkpoint = checkpoint_for(TINYNET_NNX, 0, None)
    save(tmp_path / "tiny.h5", checkpoint)
    summary = convert_file(tmp_path / "tiny.h5", tmp_path / "tiny.nnx.msgpack",
                           architecture="tinynet_nnx")
    assert "tiny.nnx.msgpack" in summary
    state = msgpack_restore((tmp_path / "tiny.nnx.msgpack").read_bytes())
    assert sorted(state) == ["bn1", "conv1", "fc"]  # no collection level
    assert sorted(state["bn1"]) == ["bias", "mean", "scale", "var"]

    model = nnx_tinynet()
    nnx_state = nnx.state(model)
    nnx.replace_by_pure_dict(nnx_state, state)
    nnx.update(model, nnx_state)
    loaded = _loaded(TINYNET)
    images = _images()
    expected = loaded.flax_forward(images)
    # Eager here, jitted there: XLA fuses differently, 1-2 float32 ulps apart (3e-8 here).
    np.testing.assert_allclose(np.asarray(model(np.moveaxis(images, 1, -1))), expected,
                               rtol=0, atol=1e-6)

    convert_file(tmp_path / "tiny.nnx.msgpack", tmp_path / "back.h5",
                 architecture="tinynet_nnx")
    back = load(tmp_path / "back.h5")
    flax_held = {path: array for path, array in checkpoint.arrays.items()  # not torch's
                 if TINYNET_NNX.mapping.rule_for(path).collection is not None}  # buffers
    assert sorted(back.arrays) == sorted(flax_held)
    for path, array in flax_held.items():
        assert back.arrays[path].dtype == array.dtype
        assert np.array_equal(back.arrays[path], array), path


def test_an_nnx_state_file_with_a_path_no_rule_knows_is_named(tmp_path):
    from flax.serialization import msgpack_serialize

    from pytest_parity.checkpoint.convert_file import convert_file
    from pytest_parity.errors import CheckpointError

    path = tmp_path / "odd.nnx.msgpack"
    path.write_bytes(msgpack_serialize({"head": {"kernel": np.zeros((2, 2), np.float32)},
                                        "layers": {0: {"w": np.zeros(2, np.float32)}}}))
    with pytest.raises(CheckpointError) as error:
        convert_file(path, tmp_path / "out.h5", architecture="tinynet_nnx")
    assert error.value.problems == [
        "head/kernel: no rule of tinynet_nnx gives a Flax variable this path",
        "layers/0/w: no rule of tinynet_nnx gives a Flax variable this path"]


def test_a_loaded_pairs_records_name_their_pair():
    """Issue 29: the report picture gives each pair its row by the record's `pair`."""
    from pytest_parity.compare import records

    with records.collecting() as found:
        _loaded(TINYNET_NNX).assert_close(_images())
        _loaded(TINYNET).assert_close(_images())
    assert [record["pair"] for record in found] == [TINYNET_NNX.name, TINYNET.name]
    assert TINYNET_NNX.name != TINYNET.name
