"""A pair whose mapping declares a Flax-only variable (one no torch tensor gives) loads: the
variable takes the value the Flax module's own init gives it."""

import dataclasses

import numpy as np
import pytest

from pytest_parity.registry import Pair, register
from tests.support.tinytext import HIDDEN, INPUTS, MAPPING, VOCAB, torch_tinytext

pytest.importorskip("torch")
pytest.importorskip("flax")


def flax_scaled_tinytext():
    """TinyText's port with a learnt output scale torch lacks: its init (ones) is torch's."""
    import flax.linen as nn
    import jax.numpy as jnp

    class ScaledTinyText(nn.Module):
        dtype: jnp.dtype = jnp.float32

        @nn.compact
        def __call__(self, input_ids, attention_mask):
            hidden = nn.Embed(VOCAB, HIDDEN, dtype=self.dtype, name="embed")(input_ids)
            hidden = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, name="norm")(hidden)
            hidden = nn.Dense(HIDDEN, dtype=self.dtype, name="dense")(hidden)
            hidden = hidden * self.param("scale", nn.initializers.ones, (HIDDEN,))
            weights = attention_mask[..., None].astype(hidden.dtype)
            pooled = (hidden * weights).sum(1) / jnp.maximum(weights.sum(1), 1)
            return {"last_hidden_state": hidden, "pooler_output": pooled}

    return ScaledTinyText()


SCALED = register(Pair("tinytext_flax_only", torch_tinytext, flax_scaled_tinytext,
                       dataclasses.replace(MAPPING, flax_only=("params/scale",)),
                       inputs=INPUTS))


def test_a_flax_only_variable_takes_its_init_value_and_the_pair_loads_and_agrees():
    from pytest_parity.checkpoint import checkpoint_to_flax
    from pytest_parity.run import checkpoint_for, load_pair

    checkpoint = checkpoint_for(SCALED, 0, None)
    assert "scale" not in checkpoint.arrays  # no torch tensor gives it
    variables = checkpoint_to_flax(checkpoint, SCALED)
    assert np.array_equal(variables["params"]["scale"], np.ones(HIDDEN, np.float32))
    assert variables["params"]["dense"]["kernel"].shape == (HIDDEN, HIDDEN)
    loaded = load_pair(SCALED, checkpoint, "cpu", "float32")
    assert loaded.assert_close(SCALED.example_inputs(0)).comparison.passed


def test_convert_writes_the_flax_only_variable_into_flax_variables(tmp_path):
    from pytest_parity.checkpoint import checkpoint_from_torch, save
    from pytest_parity.checkpoint.convert_file import convert_file
    from pytest_parity.checkpoint.flax_files import read_variables

    state = {key: value.numpy() for key, value in torch_tinytext().state_dict().items()}
    save(tmp_path / "model.h5", checkpoint_from_torch(state, SCALED))
    convert_file(tmp_path / "model.h5", tmp_path / "model.msgpack")
    variables = read_variables(tmp_path / "model.msgpack")
    assert np.array_equal(variables["params"]["scale"], np.ones(HIDDEN, np.float32))
