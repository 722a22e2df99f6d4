import pytest

from pytest_parity.compare.tolerance import (
    DEFAULT_TOLERANCES,
    EXACT,
    Tolerance,
    default_tolerance,
    resolve_layers,
)


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


F32 = DEFAULT_TOLERANCES["float32"]


@pytest.mark.parametrize(
    ("layers", "expected", "source"),
    [
        ([], F32, "default"),
        ([("pair", None, 0.5)], Tolerance(F32.rtol, 0.5), "pair"),
        ([("pair", 0.1, 0.5), ("marker", None, 0.25)], Tolerance(0.1, 0.25), "marker"),
        ([("pair", 0.1, None), ("marker", None, None), ("command line", 0.0, None)],
         Tolerance(0.0, F32.atol), "command line"),
        ([("marker", {"bfloat16": 0.1}, {"float32": 2e-5})], Tolerance(F32.rtol, 2e-5),
         "marker"),
        ([("marker", {"bfloat16": 0.1}, None)], F32, "default"),
    ],
    ids=["defaults", "pair-atol", "marker-over-pair", "command-line-last", "per-dtype",
         "other-dtype-only"],
)
def test_each_layer_overrides_what_it_gives(layers, expected, source):
    assert resolve_layers(["float32", "float32"], layers) == (expected, source)


def test_negative_tolerance_is_refused():
    with pytest.raises(ValueError, match="rtol=-1"):
        Tolerance(rtol=-1, atol=0)
