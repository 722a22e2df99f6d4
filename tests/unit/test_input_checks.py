"""Named inputs checked against their declaration before either model runs: shared
dimensions, value ranges and dtype kinds each named, not left to a gather in jax or torch."""

import numpy as np
import pytest

from pytest_parity.inputs import Input, InputError, check_inputs

TEXT = (Input("input_ids", (2, 6), "int64", high=50),
        Input("attention_mask", (2, 6), "int64", mask=True),
        Input("token_type_ids", (2, 6), "int64", high=2))
BOOL_MASK = (TEXT[0], Input("attention_mask", (2, 6), "bool", mask=True))
FEATURES = (Input("features", (2, 6), "float32"),)


def _text(length=6, **changed):
    batch = {"input_ids": np.full((2, length), 3), "attention_mask": np.ones((2, length), int),
             "token_type_ids": np.zeros((2, length), int)}
    return {**batch, **changed}


def _ids_with(value, at):
    ids = np.full((2, 6), 3)
    ids[at] = value
    return ids


MISFITS = [
    ("mask-shorter-than-ids", TEXT, _text(attention_mask=np.ones((2, 4), int)),
     "attention_mask: shape (2, 4) where input_ids has (2, 6); dimension 1, declared alike "
     "(6), differs"),
    ("batch-differs", TEXT, _text(token_type_ids=np.zeros((3, 6), int)),
     "token_type_ids: shape (3, 6) where input_ids has (2, 6); dimension 0, declared alike "
     "(2), differs"),
    ("id-past-vocabulary", TEXT, _text(input_ids=_ids_with(99999, (1, 2))),
     "input_ids: 1 of 12 values out of range (declared values in [0, 50)); the first is 99999 "
     "at index (1, 2)"),
    ("negative-ids", TEXT, _text(input_ids=np.full((2, 6), -1)),
     "input_ids: 12 of 12 values out of range (declared values in [0, 50)); the first is -1 at "
     "index (0, 0)"),
    ("mask-of-twos", TEXT, _text(attention_mask=np.full((2, 6), 2)),
     "attention_mask: 12 of 12 values out of range (a mask holds 0 and 1); the first is 2 at "
     "index (0, 0)"),
    ("float-mask-for-int", TEXT, _text(attention_mask=np.ones((2, 6), np.float32)),
     "attention_mask: dtype float32 where int64 was declared"),
    ("float-mask-for-bool", BOOL_MASK, {"input_ids": np.zeros((2, 6), int),
                                        "attention_mask": np.ones((2, 6), np.float32)},
     "attention_mask: dtype float32 where bool was declared"),
    ("bool-token-ids", TEXT, _text(input_ids=np.ones((2, 6), bool)),
     "input_ids: dtype bool where int64 was declared"),
    ("bool-features", FEATURES, {"features": np.ones((2, 6), bool)},
     "features: dtype bool where float32 was declared"),
    ("int-features", FEATURES, {"features": np.ones((2, 6), int)},
     "features: dtype int64 where float32 was declared"),
]


@pytest.mark.parametrize(("declared", "given", "problem"), [m[1:] for m in MISFITS],
                         ids=[m[0] for m in MISFITS])
def test_a_misfit_is_named_with_the_pair_the_input_and_what_is_wrong(declared, given, problem):
    with pytest.raises(InputError) as error:
        check_inputs(declared, given, "pair 'text'")
    assert str(error.value) == ("[parity] pair 'text': inputs do not fit its declaration:\n"
                                f"  - {problem}")


FITS = [
    ("int-mask", TEXT, _text()),
    ("bool-mask-for-int", TEXT, _text(attention_mask=np.ones((2, 6), bool))),
    ("int-mask-for-bool", BOOL_MASK, {"input_ids": np.zeros((2, 6), int),
                                      "attention_mask": np.ones((2, 6), np.int32)}),
    ("another-length-alike", TEXT, _text(length=40)),
    ("int32-ids-at-the-edges", TEXT, _text(input_ids=np.array([[0] * 6, [49] * 6], np.int32))),
]


@pytest.mark.parametrize(("declared", "given"), [f[1:] for f in FITS], ids=[f[0] for f in FITS])
def test_inputs_that_fit_pass(declared, given):
    check_inputs(declared, given, "pair 'text'")


def test_a_registered_pair_names_itself_before_any_model_runs():
    from tests.support.tinytext import TINYTEXT

    batch = {**TINYTEXT.example_inputs(0), "input_ids": _ids_with(99999, (0, 3))}
    with pytest.raises(InputError, match=r"^\[parity\] pair 'tinytext': inputs do not fit its "
                                         r"declaration:\n  - input_ids: 1 of 12 values out of "
                                         r"range \(declared values in \[0, 50\)\); the first is "
                                         r"99999 at index \(0, 3\)$"):
        TINYTEXT.check_inputs(batch)
