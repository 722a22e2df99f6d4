"""Pairs whose models take named inputs (token ids, an attention mask): declared, drawn,
checked, run on both sides as keyword arguments, converted and traced."""

import numpy as np
import pytest

from pytest_parity.errors import ParityError
from pytest_parity.inputs import Input, InputError
from pytest_parity.registry import Pair
from tests.support.tinytext import INPUTS, MAPPING, TINYTEXT, flax_tinytext, torch_tinytext

torch = pytest.importorskip("torch")
pytest.importorskip("flax")


@pytest.fixture(scope="module")
def loaded():
    from pytest_parity.run import checkpoint_for, load_pair

    checkpoint = checkpoint_for(TINYTEXT, 0, None)
    return load_pair(TINYTEXT, checkpoint, "cpu", "float32")


def test_a_declared_example_draws_ids_in_range_and_a_mask_padded_at_the_end():
    batch = TINYTEXT.example_inputs(3)
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"].dtype == np.int64 and batch["input_ids"].max() < 50
    mask = batch["attention_mask"]
    assert mask.shape == (2, 6) and mask[:, 0].all()
    assert all(np.all(np.diff(row) <= 0) for row in mask)  # ones, then zeros
    assert np.array_equal(TINYTEXT.example_inputs(3)["input_ids"], batch["input_ids"])


def test_both_sides_take_named_inputs_as_keywords_and_agree(loaded):
    batch = TINYTEXT.example_inputs(0)
    result = loaded.assert_close(batch)
    assert set(result.torch) == {"last_hidden_state", "pooler_output"}
    assert result.flax["last_hidden_state"].shape == (2, 6, 8)
    assert result.comparison.passed


def test_a_port_bug_behind_named_inputs_fails(loaded, monkeypatch):
    import jax

    buggy = flax_tinytext(epsilon=1e-1)
    monkeypatch.setattr(loaded, "flax_apply", jax.jit(buggy.apply))
    with pytest.raises(AssertionError) as error:
        loaded.assert_close(TINYTEXT.example_inputs(0))
    message = str(error.value)
    assert message.startswith("[parity] tinytext: 2 of 2 leaves not sufficiently close")
    assert "[parity] tinytext/last_hidden_state: values are not sufficiently close" in message


def test_inputs_that_do_not_fit_the_declaration_name_the_pair_and_each_input(loaded):
    batch = TINYTEXT.example_inputs(0)
    with pytest.raises(InputError) as error:
        loaded.assert_close({"input_ids": batch["input_ids"].astype(np.float32),
                             "token_type_ids": batch["input_ids"]})
    message = str(error.value)
    assert message.startswith("[parity] pair 'tinytext': inputs do not fit")
    assert "attention_mask: missing (declared attention_mask (2, 6) int64 (attention mask))" \
        in message
    assert "token_type_ids: not an input of pair 'tinytext'" in message
    assert "input_ids: dtype float32 where int64 was declared" in message
    with pytest.raises(InputError, match=r"takes named inputs .*pass a dict"):
        loaded.assert_close(batch["input_ids"])


def test_a_pair_declares_one_batch_or_named_inputs():
    with pytest.raises(ParityError, match=r"give either input_shape .* or inputs="):
        Pair("both", torch_tinytext, flax_tinytext, MAPPING, (1, 6), inputs=INPUTS)
    with pytest.raises(ParityError, match="give either"):
        Pair("neither", torch_tinytext, flax_tinytext, MAPPING)
    with pytest.raises(ParityError, match=r"Input\('input ids'\): the name must be"):
        Input("input ids", (2, 6), "int64")
    with pytest.raises(ParityError, match="a mask is integer or bool"):
        Input("attention_mask", (2, 6), "float32", mask=True)


def test_two_inputs_of_one_name_are_refused_naming_the_pair_and_the_name():
    twice = (*INPUTS, Input(INPUTS[0].name, (2, 6), "int64"))
    with pytest.raises(ParityError, match=r"^\[parity\] Pair\('twice'\): two inputs are named "
                                          f"'{INPUTS[0].name}'"):
        Pair("twice", torch_tinytext, flax_tinytext, MAPPING, inputs=twice)


def test_a_flax_module_that_cannot_take_the_declared_inputs_is_named_not_a_traceback():
    from pytest_parity.checkpoint.convert import flax_spec

    def flax_without_mask():
        import flax.linen as nn

        class Encoder(nn.Module):
            @nn.compact
            def __call__(self, input_ids):
                return nn.Embed(50, 8, name="embed")(input_ids)

        return Encoder()

    pair = Pair("tinytext_nomask", torch_tinytext, flax_without_mask, MAPPING, inputs=INPUTS)
    with pytest.raises(ParityError) as error:
        flax_spec(pair)
    message = str(error.value)
    assert message.startswith("[parity] pair 'tinytext_nomask' (input_ids (2, 6) int64")
    assert "Encoder.init cannot run on the declared inputs" in message
    assert "attention_mask" in message


def test_convert_leaves_out_a_buffer_the_model_does_not_save(tmp_path):
    from safetensors.numpy import save_file

    from pytest_parity.checkpoint import load
    from pytest_parity.checkpoint.convert_file import convert_file

    state = {key: value.numpy() for key, value in torch_tinytext().state_dict().items()}
    state["position_ids"] = np.arange(6)[None]  # as an older version's file holds it
    save_file(state, str(tmp_path / "model.safetensors"))
    summary = convert_file(tmp_path / "model.safetensors", tmp_path / "model.h5",
                           architecture="tinytext")
    assert summary.endswith("left out 1 key the model does not save: position_ids")
    assert "position_ids" not in str(sorted(load(tmp_path / "model.h5").arrays))
    flax_summary = convert_file(tmp_path / "model.h5", tmp_path / "model.msgpack")
    assert "tensors of tinytext" in flax_summary


def test_the_trace_runs_on_named_inputs_and_blames_the_module_with_the_bug(loaded,
                                                                            monkeypatch):
    batch = TINYTEXT.example_inputs(0)
    clean = loaded.diagnose(batch, descend=True)
    assert clean.trace.culprit is None and not clean.found
    monkeypatch.setattr(loaded, "flax_model", flax_tinytext(epsilon=1e-1))
    culprit = loaded.diagnose(batch).trace.culprit
    assert culprit is not None and culprit.pair.torch == "norm"


def test_a_strategy_draws_the_declared_inputs_and_a_declared_strategy_wins():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from pytest_parity.strategies import declared_inputs

    fixed_ids = Input("input_ids", (2, 6), "int64", high=50,
                      strategy=lambda: st.just(np.full((2, 6), 7)))
    seen = []

    @settings(max_examples=10, database=None, deadline=None)
    @given(batch=declared_inputs((fixed_ids, INPUTS[1])))
    def check(batch):
        seen.append(batch)
        TINYTEXT.check_inputs(batch)

    check()
    assert all((b["input_ids"] == 7).all() for b in seen)
    assert len({b["attention_mask"].tobytes() for b in seen}) > 1


def test_padding_that_differs_fails_unmasked_with_a_hint_and_passes_with_a_mask_per_leaf(
        loaded, monkeypatch):
    import jax
    import jax.numpy as jnp

    correct = loaded.flax_apply

    def differs_in_padding(variables, input_ids, attention_mask):
        out = correct(variables, input_ids=input_ids, attention_mask=attention_mask)
        padding = (attention_mask == 0)[..., None]
        return {**out, "last_hidden_state": jnp.where(padding, out["last_hidden_state"] + 1.0,
                                                      out["last_hidden_state"])}

    monkeypatch.setattr(loaded, "flax_apply", jax.jit(differs_in_padding))
    batch = TINYTEXT.example_inputs(0)
    assert not batch["attention_mask"].all()  # the example has padding
    with pytest.raises(AssertionError) as error:
        loaded.assert_close(batch)
    assert "worst element is in padding" in str(error.value)
    loaded.assert_close(batch, mask={"last_hidden_state": batch["attention_mask"],
                                     "pooler_output": None})


def test_convert_leaves_out_a_key_the_mapping_ignores(tmp_path):
    import dataclasses

    from safetensors.numpy import save_file

    from pytest_parity.checkpoint import load
    from pytest_parity.checkpoint.convert_file import convert_file
    from pytest_parity.registry import register

    mapping = dataclasses.replace(MAPPING, ignored=("optimizer_step",))
    register(Pair("tinytext_ignoring", torch_tinytext, flax_tinytext, mapping, inputs=INPUTS))
    state = {key: value.numpy() for key, value in torch_tinytext().state_dict().items()}
    state["optimizer_step"] = np.array(3)
    save_file(state, str(tmp_path / "model.safetensors"))
    summary = convert_file(tmp_path / "model.safetensors", tmp_path / "model.h5",
                           architecture="tinytext_ignoring")
    assert summary.endswith("left out 1 key the model does not save: optimizer_step")
    assert "optimizer_step" not in load(tmp_path / "model.h5").arrays


def test_a_torch_model_that_does_not_take_a_declared_input_is_named_not_a_traceback(loaded,
                                                                                     monkeypatch):
    class IdsOnly(torch.nn.Module):
        def forward(self, input_ids):
            return input_ids

    monkeypatch.setattr(loaded, "torch_model", IdsOnly())
    with pytest.raises(InputError) as error:
        loaded.torch_forward(TINYTEXT.example_inputs(0))
    message = str(error.value)
    assert message.startswith("[parity] pair 'tinytext', torch side: IdsOnly(input_ids) cannot "
                              "take the named inputs input_ids, attention_mask")
    assert "unexpected keyword argument 'attention_mask'" in message


def test_a_pairs_record_lists_the_torch_tensors_no_flax_variable_holds():
    from pytest_parity.compare import records
    from pytest_parity.run import checkpoint_for, load_pair
    from tests.support.tinynet import TINYNET

    pair = load_pair(TINYNET, checkpoint_for(TINYNET, 0, None), "cpu", "float32")
    with records.collecting() as found:
        pair.assert_close(np.random.default_rng(0).standard_normal((2, 3, 8, 8)))
    assert found[0]["torch_only"] == ["bn1.num_batches_tracked"]  # a name's digit stays
    text = load_pair(TINYTEXT, checkpoint_for(TINYTEXT, 0, None), "cpu", "float32")
    with records.collecting() as found:
        text.assert_close(TINYTEXT.example_inputs(0))
    assert found[0]["torch_only"] == []
