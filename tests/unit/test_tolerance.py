import pytest

from pytest_parity.tolerance import DEFAULT_TOLERANCES, EXACT, Tolerance, default_tolerance, resolve


def test_every_float_dtype_has_a_default():
    assert set(DEFAULT_TOLERANCES) == {"float64", "float32", "float16", "bfloat16"}


@pytest.mark.parametrize(
    ("dtypes", "expected"),
    [
        (("float32", "float32"), DEFAULT_TOLERANCES["float32"]),
        (("float32", "bfloat16"), DEFAULT_TOLERANCES["bfloat16"]),
        (("float64", "float16"), DEFAULT_TOLERANCES["float16"]),
        (("int64", "int64"), EXACT),
        (("bool", "float32"), DEFAULT_TOLERANCES["float32"]),
    ],
    ids=["same", "bf16-wins", "f16-wins", "integers-exact", "ignores-non-float"],
)
def test_least_precise_dtype_sets_the_default(dtypes, expected):
    assert default_tolerance(*dtypes) == expected


def test_resolve_overrides_only_what_is_given():
    assert resolve(None, 0.5, "float32") == Tolerance(rtol=DEFAULT_TOLERANCES["float32"].rtol,
                                                       atol=0.5)
    assert resolve(0.1, None, "bfloat16") == Tolerance(rtol=0.1,
                                                        atol=DEFAULT_TOLERANCES["bfloat16"].atol)


def test_negative_tolerance_is_refused():
    with pytest.raises(ValueError, match="rtol=-1"):
        Tolerance(rtol=-1, atol=0)
