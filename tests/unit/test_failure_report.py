"""The failure report's format, pinned: every failing leaf, worst first."""

import numpy as np
import pytest

from pytest_parity import assert_close


def _failure(*args, **kwargs):
    with pytest.raises(AssertionError) as failure:
        assert_close(*args, **kwargs)
    return str(failure.value)


def test_one_leaf():
    expected = np.zeros((2, 3), np.float32)
    actual = expected.copy()
    actual[1, 2], actual[0, 1], actual[0, 0] = 0.5, 0.25, 0.05
    mask = np.array([[True, True, True], [False, True, True]])
    assert _failure(actual, expected, rtol=0, atol=0.1, mask=mask, name="logits") == """\
[parity] logits: values are not sufficiently close
  shape (2, 3), dtypes float32 (actual) vs float32 (expected)
  worst element at index (1, 2): abs err 5.000e-01 where 1.000e-01 is allowed; margin 5
  max abs error 5.000e-01 at index (1, 2); no rel error (each differing element is expected 0)
  2 of 5 valid elements (40.00%) out of tolerance rtol=0, atol=0.1 (from pair)
  masked out: 1 of 6 elements
  worst elements:
    index   actual     expected   abs err    allowed
    (1, 2)  5.000e-01  0.000e+00  5.000e-01  1.000e-01
    (0, 1)  2.500e-01  0.000e+00  2.500e-01  1.000e-01"""


def test_every_failing_leaf_worst_first():
    expected = {"logits": np.ones(4, np.float32), "hidden": [np.zeros(2, np.float32)] * 3}
    actual = {"logits": np.array([1, 1, 1, 1.5], np.float32),
              "hidden": [np.zeros(2, np.float32), np.array([0, 2e-5], np.float32),
                         np.array([1.0, 0], np.float32)]}
    message = _failure(actual, expected, name="outputs")
    headers = [line for line in message.splitlines() if line.startswith("[parity]")]
    assert headers == [
        "[parity] outputs: 3 of 4 leaves not sufficiently close (worst first)",
        "[parity] outputs/hidden/2: values are not sufficiently close",
        "[parity] outputs/logits: values are not sufficiently close",
        "[parity] outputs/hidden/1: values are not sufficiently close",
    ]
    assert "  1 of 2 elements (50.00%) out of tolerance rtol=1.3e-06, atol=1e-05 (from " \
           "default)" in message
    assert "abs err 2.000e-05 where 1.000e-05 is allowed; margin 2" in message


def test_the_header_and_the_table_are_the_same_elements_in_the_compared_dtype():
    """A bfloat16 case printed 'max abs error 1.633e+00 ... worst at index (0, 1, 1, 0)' where
    the table's row for that index showed 1.199: the largest abs error and the largest margin
    were different elements. Each figure now names its own element, in the compared dtype."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    expected = np.array([100.0, 1.0, 0.0, 3.0], ml_dtypes.bfloat16)
    actual = np.array([101.5, 1.25, 0.0, 3.0], ml_dtypes.bfloat16)  # 1.5 of 100, 0.25 of 1
    message = _failure(actual, expected, name="logits")
    lines = message.splitlines()
    assert lines[1] == "  shape (4,), dtypes bfloat16 (actual) vs bfloat16 (expected)"
    # rtol 1.6e-2: 100 allows 1.61, 1 allows 0.026 - the worst is index 1, not the largest error
    assert lines[2] == ("  worst element at index (1,): abs err 2.500e-01 where 2.600e-02 is "
                        "allowed; margin 9.62")
    assert lines[3] == ("  max abs error 1.500e+00 at index (0,); max rel error 2.500e-01 at "
                        "index (1,)")
    table = lines[lines.index("  worst elements:") + 2:]
    assert table == ["    (1,)   1.250e+00  1.000e+00  2.500e-01  2.600e-02"]


def test_structure_is_checked_before_values():
    with pytest.raises(AssertionError) as failure:
        assert_close({"a": np.zeros(2), "b": np.zeros((2, 2))},
                     {"a": np.ones(3), "c": np.zeros(1)}, name="params")
    assert str(failure.value) == """\
[parity] params: structures differ (3 problems)
  params/c: missing in actual (expected has it)
  params/b: unexpected in actual (expected has no such leaf)
  params/a: shape (2,) (float64) does not match expected shape (3,) (float64)"""


def test_assert_trees_close_still_checks_and_warns_that_it_is_deprecated():
    from pytest_parity import assert_trees_close
    from pytest_parity.errors import ParityDeprecationWarning

    with pytest.warns(ParityDeprecationWarning, match=r"^\[parity\] assert_trees_close is "
                      r"deprecated .*; use assert_close") as warned:
        comparison = assert_trees_close({"a": np.zeros(2)}, {"a": np.zeros(2)}, name="params")
    assert comparison.passed and issubclass(warned[0].category, DeprecationWarning)
    assert warned[0].filename == __file__  # the warning points at the caller
    with pytest.warns(ParityDeprecationWarning), pytest.raises(AssertionError, match="params/a"):
        assert_trees_close({"a": np.zeros(2)}, {"a": np.ones(2)}, name="params")
