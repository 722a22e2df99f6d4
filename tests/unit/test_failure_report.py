"""The failure report's format, pinned: every failing leaf, worst first."""

import numpy as np
import pytest

from pytest_parity import assert_close, assert_trees_close


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
  max abs error 5.000e-01, max rel error inf, worst at index (1, 2)
  2 of 6 elements (33.33%) out of tolerance rtol=0, atol=0.1 (from pair); margin 5
  1 position masked out
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
           "default); margin 2" in message


def test_structure_is_checked_before_values():
    with pytest.raises(AssertionError) as failure:
        assert_trees_close({"a": np.zeros(2), "b": np.zeros((2, 2))},
                           {"a": np.ones(3), "c": np.zeros(1)}, name="params")
    assert str(failure.value) == """\
[parity] params: structures differ (3 problems)
  params/c: missing in actual (expected has it)
  params/b: unexpected in actual (expected has no such leaf)
  params/a: shape (2,) (float64) does not match expected shape (3,) (float64)"""
