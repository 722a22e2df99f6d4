"""The hypothesis strategies: layouts, bounds, buckets, and errors that propose the fix."""

import numpy as np
import pytest
from hypothesis import find, given, settings

from pytest_parity.strategies import (
    StrategyArgumentError,
    feature_batches,
    image_batches,
    inputs_for,
    sequence_batches,
    token_batches,
)


@settings(max_examples=30, database=None)
@given(batch=image_batches(channels=3, min_size=8, max_size=32, min_value=-2, max_value=3))
def test_image_batches_are_one_draw_in_two_layouts(batch):
    assert batch.torch.shape[1] == 3 and batch.torch.dtype == np.float32
    assert np.array_equal(batch.flax, batch.torch.transpose(0, 2, 3, 1))
    assert batch.torch.shape[0] in (1, 2, 4) and batch.torch.shape[2] in (8, 16, 32)
    assert np.all(np.isfinite(batch.torch))
    assert batch.torch.min() >= -2 and batch.torch.max() <= 3


@settings(max_examples=30, database=None)
@given(batch=image_batches(channels=2, min_size=9, max_size=13, bucketed=False, square=False))
def test_unbucketed_shapes_take_every_size(batch):
    assert 9 <= batch.torch.shape[2] <= 13 and 9 <= batch.torch.shape[3] <= 13


@settings(max_examples=20, database=None)
@given(tokens=token_batches(vocab_size=7), sequence=sequence_batches(features=5),
       features=feature_batches(features=3))
def test_other_batches_share_one_layout(tokens, sequence, features):
    assert tokens.torch.dtype == np.int64 and tokens.flax.dtype == np.int32
    assert tokens.torch.max() < 7 and np.array_equal(tokens.torch, tokens.flax)
    assert sequence.torch.shape[2] == 5 and sequence.torch is sequence.flax
    assert features.torch.shape[1] == 3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: image_batches(channels=0),
         "image_batches: channels=0 must be a positive integer, e.g. image_batches(channels=3, "
         "min_size=8, max_size=32)"),
        (lambda: image_batches(channels=3, min_size=32, max_size=16),
         "image_batches: min_size=32 > max_size=16; swap them, or set max_size >= 32, e.g. "
         "image_batches(..., min_size=16, max_size=32)"),
        (lambda: sequence_batches(features=8, min_value=1.0, max_value=-1.0),
         "sequence_batches: min_value=1.0, max_value=-1.0 must be finite with min_value < "
         "max_value, e.g. sequence_batches(..., min_value=-1.0, max_value=1.0)"),
        (lambda: token_batches(vocab_size=100, max_batch=2.5),
         "token_batches: max_batch=2.5 must be a positive integer"),
        (lambda: image_batches(channels=3, dtype="int8"),
         "image_batches: dtype='int8' must be one of float16, bfloat16, float32, float64, e.g. "
         "image_batches(channels=3, min_size=8, max_size=32)"),
        (lambda: feature_batches(features=4, dtype="float"),
         "feature_batches: dtype='float' must be one of float16, bfloat16, float32, float64"),
        (lambda: sequence_batches(features=4, dtype=None),
         "sequence_batches: dtype=None must be one of"),
    ],
    ids=["channels", "sizes", "values", "batch", "dtype-int", "dtype-unknown", "dtype-none"],
)
def test_bad_arguments_propose_the_fix(make, message):
    with pytest.raises(StrategyArgumentError) as error:
        make()
    assert message in str(error.value)


@settings(max_examples=5, database=None)
@given(half=feature_batches(features=3, dtype="bfloat16"),
       double=sequence_batches(features=2, dtype=np.float64))
def test_a_valid_dtype_is_the_drawn_values_dtype(half, double):
    assert str(half.torch.dtype) == "bfloat16" and double.torch.dtype == np.float64


def test_positional_arguments_are_refused():
    with pytest.raises(TypeError):
        image_batches(3)  # keyword-only: channels=3


def test_inputs_follow_the_layers_configuration():
    torch = pytest.importorskip("torch")
    draw = lambda strategy: find(strategy, lambda batch: True)  # noqa: E731 (the first draw)
    assert draw(inputs_for(torch.nn.Conv2d(5, 2, 3))).torch.shape[1] == 5
    assert draw(inputs_for(torch.nn.Linear(7, 2))).torch.shape[1] == 7
    assert draw(inputs_for(torch.nn.LayerNorm(6))).torch.shape[2] == 6
    assert draw(inputs_for(torch.nn.MultiheadAttention(8, 2))).torch.shape[2] == 8
    assert draw(inputs_for(torch.nn.Embedding(11, 4))).torch.max() < 11
    with pytest.raises(StrategyArgumentError, match="inputs_for: cannot tell the input shape of "
                                                    "a torch ReLU; pass inputs="):
        inputs_for(torch.nn.ReLU())
