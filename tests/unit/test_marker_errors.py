"""read_marker on its own (the pytester table in tests/plugin/test_marker_cases.py shows the
collection error): what it keeps of valid odd values, and the words of its refusals."""

import pytest

from pytest_parity.cases import MarkerSpec, read_marker


def _read(*args, **kwargs):
    return read_marker(pytest.mark.parity.with_args(*args, **kwargs).mark)


def test_numbers_of_any_real_type_are_kept_as_floats_and_mappings_as_dicts():
    from fractions import Fraction

    import numpy as np

    spec = _read(rtol=np.float32(0.5), atol={"bfloat16": Fraction(1, 4), "float32": 0})
    assert spec == MarkerSpec(rtol=0.5, atol={"bfloat16": 0.25, "float32": 0.0})
    assert type(spec.rtol) is float and all(type(v) is float for v in spec.atol.values())


def test_a_generator_is_refused_so_the_second_read_cannot_differ():
    mark = pytest.mark.parity(dtypes=(name for name in ["float32"])).mark
    with pytest.raises(ValueError, match=r"^parity marker: dtypes=<generator object .*\(a list\)"):
        read_marker(mark)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rtol": 10**5000}, "parity marker: rtol=<a int>; expected a finite number >= 0"),
    ({"dtypes": ["float32", 5]}, "parity marker: dtypes=['float32', 5]; each must be one of"),
    ({"devices": {"cpu": True}}, "parity marker: devices={'cpu': True}; each must be one of"),
    ({"atol": {1: 0.1}}, "parity marker: atol={1: 0.1}; 1 is not a dtype"),
    ({"atol": {"float16": -1}}, "parity marker: atol={'float16': -1}; atol['float16'] must be "
                                "a finite number >= 0, e.g. atol={'float16': 1e-5}"),
    ({"rtol": "1e-3"}, "parity marker: rtol='1e-3'; expected a finite number >= 0"),
    ({"rtol": "x" * 500}, "parity marker: rtol='xxxxxxxxx"),
], ids=["int-too-long-to-print", "dtype-not-a-name", "devices-dict", "dtype-key-not-a-name",
        "negative-per-dtype", "number-as-string", "long-value-cut"])
def test_refusals_name_the_argument_and_the_value(kwargs, message):
    with pytest.raises(ValueError) as error:
        _read(**kwargs)
    assert str(error.value).startswith(message)
    assert len(str(error.value)) < 300
