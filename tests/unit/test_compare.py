import ml_dtypes
import numpy as np
import pytest

from pytest_parity import assert_close
from pytest_parity.compare import compare


def test_identical_arrays_pass_with_zero_margin():
    values = np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 3, 4)
    result = assert_close(values, values.copy())
    assert (result.passed, result.max_abs, result.margin, result.n_failing) == (True, 0.0, 0.0, 0)


def test_error_within_tolerance_passes_and_reports_its_margin():
    expected = np.ones(10, dtype=np.float32)
    actual = expected + np.float32(5e-6)
    result = assert_close(actual, expected)
    assert result.passed
    assert 0.3 < result.margin < 0.5  # 5e-6 / (1e-5 + 1.3e-6)


def test_shape_mismatch_names_both_shapes_and_dtypes():
    with pytest.raises(AssertionError, match=r"output: shape \(2, 3\) \(float32\) does not "
                                             r"match expected shape \(3, 2\) \(float32\)"):
        assert_close(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32))


@pytest.mark.parametrize(
    ("actual", "expected", "passes"),
    [
        ([np.nan, 1.0], [np.nan, 1.0], True),
        ([np.inf, -np.inf], [np.inf, -np.inf], True),
        ([np.nan, 1.0], [0.0, 1.0], False),
        ([1.0, 1.0], [np.nan, 1.0], False),
        ([np.inf, 1.0], [-np.inf, 1.0], False),
        ([np.inf, 1.0], [1e30, 1.0], False),
    ],
    ids=["nan-agrees", "inf-agrees", "nan-in-actual", "nan-in-expected", "inf-sign", "inf-vs-big"],
)
def test_nonfinite_positions_must_agree(actual, expected, passes):
    result = compare(np.array(actual), np.array(expected))
    assert result.passed is passes
    if not passes:
        assert result.margin == np.inf and result.worst_leaf.worst_index == (0,)


def test_bfloat16_uses_the_bfloat16_default():
    expected = np.array([1.0, 2.0], dtype=ml_dtypes.bfloat16)
    actual = np.array([1.0078125, 2.0], dtype=ml_dtypes.bfloat16)  # one bf16 step above 1
    result = assert_close(actual, expected)
    leaf = result.worst_leaf
    assert (leaf.actual_dtype, leaf.rtol, leaf.atol) == ("bfloat16", 1.6e-2, 1e-2)


def test_integers_must_match_exactly():
    assert not compare(np.array([1, 2, 3]), np.array([1, 2, 4])).passed


def test_torch_and_jax_inputs_compare_exactly_as_numpy():
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    values = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    assert_close(torch.from_numpy(values), jnp.asarray(values), rtol=0, atol=0)
    bf16 = torch.from_numpy(values).to(torch.bfloat16)
    assert_close(bf16, jnp.asarray(values, dtype=jnp.bfloat16), rtol=0, atol=0)
    assert compare(bf16, values).worst_leaf.actual_dtype == "bfloat16"


def test_trees_of_mixed_frameworks_compare_leaf_by_leaf():
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    actual = {"logits": torch.from_numpy(values), "extra": (jnp.asarray(values), np.ones(2))}
    expected = {"extra": [values, np.ones(2)], "logits": values}
    result = assert_close(actual, expected, name="outputs")
    assert sorted(leaf.path for leaf in result.leaves) == ["extra/0", "extra/1", "logits"]


def test_mask_excludes_positions_and_counts_them():
    expected = np.zeros((2, 4, 3), np.float32)
    actual = expected.copy()
    actual[1, 3] = 1.0  # a padded token of the second sequence
    tokens = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool)  # (batch, tokens): a prefix shape
    result = assert_close(actual, expected, mask=tokens)
    assert result.leaves[0].n_masked == 3 and result.max_abs == 0.0
    assert (result.leaves[0].n_masked_positions, result.leaves[0].n_valid) == (1, 21)
    assert not compare(actual, expected).passed


def test_a_mask_that_fits_no_leaf_names_the_leaf_and_both_shapes():
    with pytest.raises(AssertionError, match=r"\[parity\] out/a: mask of shape \(3,\) fits "
                                             r"neither a prefix of nor broadcasts to the leaf's "
                                             r"shape \(2, 4\)"):
        compare({"a": np.zeros((2, 4))}, {"a": np.zeros((2, 4))}, mask=np.ones(3, bool),
                name="out")
