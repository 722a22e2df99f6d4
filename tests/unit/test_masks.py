"""Masks per leaf (a tree of masks, a function of the path, one array for the leaves it fits),
counts of masked positions and valid elements, and the padding hint of unmasked failures."""

import numpy as np
import pytest

from pytest_parity import assert_close
from pytest_parity.compare import StructureMismatch, compare

BATCH, TOKENS, HIDDEN = 8, 56, 384
PADDED = (0, 5, 10, 15, 20, 25, 0, 25)  # padding tokens at the end of each row: 100 in all


def _attention_mask():
    mask = np.ones((BATCH, TOKENS), np.int64)
    for row, padded in enumerate(PADDED):
        mask[row, TOKENS - padded:] = 0
    return mask


ATTENTION = _attention_mask()
IN_PADDING = ATTENTION == 0


def _outputs():
    """A BaseModelOutputWithPooling-like pair: torch's, and a port that agrees everywhere but
    in the padding positions of the hidden states, which it fills with other values."""
    rng = np.random.default_rng(0)
    expected = {"last_hidden_state": rng.standard_normal((BATCH, TOKENS, HIDDEN), np.float32),
                "pooler_output": np.tanh(rng.standard_normal((BATCH, HIDDEN), np.float32))}
    actual = {key: value.copy() for key, value in expected.items()}
    actual["last_hidden_state"][IN_PADDING] = 1e3
    return actual, expected


def _failure(*args, **kwargs):
    with pytest.raises(AssertionError) as failure:
        assert_close(*args, name="outputs", **kwargs)
    return str(failure.value)


ONLY_HIDDEN = {
    "tree": {"last_hidden_state": ATTENTION, "pooler_output": None},
    "tree-with-a-key-left-out": {"last_hidden_state": ATTENTION},
    "function": lambda path: ATTENTION if path == "last_hidden_state" else None,
    "one-array-for-the-leaves-it-fits": ATTENTION,
    "tree-with-a-trailing-axis": {"last_hidden_state": ATTENTION[..., None]},
}


@pytest.mark.parametrize("mask", ONLY_HIDDEN.values(), ids=ONLY_HIDDEN.keys())
def test_padding_is_left_out_of_the_hidden_states_and_the_pooled_output_compared_in_full(mask):
    actual, expected = _outputs()
    result = assert_close(actual, expected, mask=mask, name="outputs")
    leaves = {leaf.path: leaf for leaf in result.leaves}
    assert (leaves["last_hidden_state"].n_masked_positions, leaves["last_hidden_state"].n_masked,
            leaves["pooler_output"].n_masked) == (100, 100 * HIDDEN, 0)

    actual["last_hidden_state"][2, 3, 100] += 1.0  # a real token of row 2
    assert "outputs/last_hidden_state: values are not sufficiently close" in _failure(
        actual, expected, mask=mask)
    actual, expected = _outputs()
    actual["pooler_output"][5, 7] += 1.0
    message = _failure(actual, expected, mask=mask)
    assert "outputs/pooler_output: values are not sufficiently close" in message
    assert "outputs/last_hidden_state" not in message


def test_without_the_mask_the_padding_fails():
    actual, expected = _outputs()
    assert not compare(actual, expected).passed


def test_the_function_is_asked_once_for_each_leaf_by_its_path():
    asked = []
    compare({"a": np.zeros(2), "b": [np.zeros(2), {"c": np.zeros(2)}]},
            {"a": np.zeros(2), "b": [np.zeros(2), {"c": np.zeros(2)}]},
            mask=lambda path: asked.append(path))
    assert asked == ["a", "b/0", "b/1/c"]


def test_a_tuple_output_takes_a_tuple_of_masks_or_a_mapping_by_position():
    expected = (np.zeros((2, 3, 4)), np.zeros((2, 4)))
    actual = (expected[0].copy(), expected[1].copy())
    actual[0][1, 2] = 9.0
    tokens = np.array([[1, 1, 1], [1, 1, 0]])
    assert compare(actual, expected, mask=(tokens, None)).passed
    assert compare(actual, expected, mask={0: tokens}).passed
    assert not compare(actual, expected, mask=(None, None)).passed


HIDDEN_AND_POOLED = {"last_hidden_state": np.zeros((2, 3, 4)), "pooler_output": np.zeros((2, 4))}
TOKENS_MASK = np.ones((2, 3))
BAD_MASKS = {
    "a-key-naming-no-leaf": (
        {"last_hidden": TOKENS_MASK},
        "[parity] outputs/last_hidden: the mask names no leaf of the output (outputs has "
        "last_hidden_state, pooler_output)"),
    "a-key-below-a-leaf": (
        {"pooler_output": {"x": TOKENS_MASK}},
        "[parity] outputs/pooler_output/x: the mask names no leaf of the output "
        "(outputs/pooler_output is an array)"),
    "a-mask-for-one-leaf-that-does-not-fit-it": (
        {"pooler_output": TOKENS_MASK},
        "[parity] outputs/pooler_output: mask of shape (2, 3) fits neither a prefix of nor "
        "broadcasts to the leaf's shape (2, 4)"),
    "a-function-returning-a-dict": (
        lambda path: {"x": TOKENS_MASK},
        "[parity] outputs: the mask does not fit the output (2 problems)\n"
        "  outputs/last_hidden_state: the mask must be an array of booleans or numbers, got dict\n"
        "  outputs/pooler_output: the mask must be an array of booleans or numbers, got dict"),
    "strings": (
        {"pooler_output": np.array(["yes", "no"])},
        "[parity] outputs/pooler_output: the mask must be an array of booleans or numbers, got "
        "dtype <U3"),
    "one-array-that-fits-no-leaf": (
        np.ones(5),
        "[parity] outputs: the mask does not fit the output (2 problems)\n"
        "  outputs/last_hidden_state: mask of shape (5,) fits neither a prefix of nor "
        "broadcasts to the leaf's shape (2, 3, 4)\n"
        "  outputs/pooler_output: mask of shape (5,) fits neither a prefix of nor broadcasts to "
        "the leaf's shape (2, 4)"),
    "every-problem-at-once": (
        {"last_hidden": TOKENS_MASK, "pooler_output": TOKENS_MASK},
        "[parity] outputs: the mask does not fit the output (2 problems)\n"
        "  outputs/last_hidden: the mask names no leaf of the output (outputs has "
        "last_hidden_state, pooler_output)\n"
        "  outputs/pooler_output: mask of shape (2, 3) fits neither a prefix of nor broadcasts "
        "to the leaf's shape (2, 4)"),
}


@pytest.mark.parametrize(("mask", "message"), BAD_MASKS.values(), ids=BAD_MASKS.keys())
def test_a_mask_that_does_not_fit_is_refused_naming_where(mask, message):
    with pytest.raises(StructureMismatch) as refused:
        compare(HIDDEN_AND_POOLED, HIDDEN_AND_POOLED, mask=mask, name="outputs")
    assert str(refused.value) == message


def test_an_index_past_the_end_of_a_tuple_is_refused():
    with pytest.raises(StructureMismatch, match=r"^\[parity\] output/2: the mask names no leaf "
                                                r"of the output \(output has 0, 1\)$"):
        compare((np.zeros(2), np.zeros(2)), (np.zeros(2), np.zeros(2)), mask=(None, None, 1))


def test_the_failure_counts_masked_positions_and_elements_and_fails_a_fraction_of_the_valid():
    actual, expected = _outputs()
    actual["last_hidden_state"][0, :2] += 1.0  # two real tokens of row 0: 768 elements
    message = _failure(actual, expected, mask={"last_hidden_state": ATTENTION})
    valid = BATCH * TOKENS * HIDDEN - 100 * HIDDEN
    assert valid == 133_632
    assert f"  768 of 133,632 valid elements ({768 / valid:.2%}) out of tolerance rtol=1.3e-06, " \
           "atol=1e-05 (from default)\n" \
           "  masked out: 100 of 448 positions (8, 56), 38,400 of 172,032 elements\n" in message
    assert "(0.57%)" in message


def test_the_record_counts_masked_positions_elements_and_valid_ones_over_the_tree():
    actual, expected = _outputs()
    actual["last_hidden_state"][0, :2] += 1.0
    record = compare(actual, expected, mask={"last_hidden_state": ATTENTION}).to_record()
    pooled = BATCH * HIDDEN
    assert {key: record[key] for key in ("size", "n_masked", "n_valid", "n_masked_positions",
                                         "n_failing")} == {
        "size": 172_032 + pooled, "n_masked": 38_400, "n_valid": 133_632 + pooled,
        "n_masked_positions": 100, "n_failing": 768}


def test_a_mask_over_every_axis_counts_elements_only():
    expected = np.zeros((2, 3), np.float32)
    actual = expected + np.float32(1.0)
    keep = np.array([[1, 1, 0], [1, 0, 0]])
    message = _failure(actual, expected, mask=keep)
    assert "  3 of 3 valid elements (100.00%) out of tolerance" in message
    assert "  masked out: 3 of 6 elements\n" in message


PADDING_HINT = ("  worst element is in padding (padding mask 0 at position (3, 41)); pass mask= "
                "to compare only real positions")


def test_an_unmasked_failure_whose_worst_element_is_in_padding_says_so_and_that_it_passes():
    actual, expected = _outputs()
    actual["last_hidden_state"][3, 41, 7] = 5e3
    message = _failure(actual, expected, padding=ATTENTION)
    lines = message.splitlines()
    worst = lines.index(PADDING_HINT)
    assert lines[worst - 1].startswith("  worst element at index (3, 41, 7):")
    assert lines[worst + 1] == ("  all 38,400 failing elements are in padding: without the "
                                "padding this leaf passes")
    assert "pooler_output" not in message


def test_the_hint_says_how_many_fail_outside_the_padding():
    actual, expected = _outputs()
    actual["last_hidden_state"][3, 41, 7] = 5e3
    actual["last_hidden_state"][2, 3, 100] += 1.0  # a real token
    lines = _failure(actual, expected, padding=ATTENTION).splitlines()
    assert lines[lines.index(PADDING_HINT) + 1] == (
        "  38,400 of 38,401 failing elements are in padding; without them 1 still fails (worst "
        f"margin {1.0 / (1e-5 + 1.3e-6 * abs(expected['last_hidden_state'][2, 3, 100])):.3g})")


def test_no_hint_where_the_worst_element_is_real_or_the_leaf_is_masked():
    actual, expected = _outputs()
    actual["last_hidden_state"][2, 3, 100] += 1e4  # worse than any padding position
    message = _failure(actual, expected, padding=ATTENTION)
    assert "padding" not in message
    actual, expected = _outputs()
    actual["pooler_output"][0, 0] += 1.0
    message = _failure(actual, expected, padding=ATTENTION,
                       mask={"last_hidden_state": ATTENTION})
    assert "padding" not in message  # the hidden states are masked; the pooled output fits none


def test_a_padding_that_fits_no_leaf_is_no_error():
    pooled = np.zeros((BATCH, HIDDEN))
    assert compare(pooled, pooled, padding=ATTENTION).passed
    with pytest.raises(StructureMismatch, match=r"outputs/pooled: the padding names no leaf"):
        compare({"x": pooled}, {"x": pooled}, padding={"pooled": ATTENTION}, name="outputs")
