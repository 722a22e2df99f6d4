import argparse

import pytest

from pytest_parity.options import parse_device, parse_dtypes, parse_seed


@pytest.mark.parametrize("value", ["cpu", "gpu", "all", "auto", " GPU "])
def test_valid_devices_parse(value):
    assert parse_device(value) == value.strip().lower()


@pytest.mark.parametrize("value", ["cuda", "", "cpu,gpu", "tpu"],
                         ids=["cuda", "empty", "list", "tpu"])
def test_invalid_device_names_the_value_and_shows_an_example(value):
    with pytest.raises(argparse.ArgumentTypeError) as error:
        parse_device(value)
    assert f"Could not parse value: {value!r}" in str(error.value)
    assert "e.g. '--parity-device=cpu'" in str(error.value)


def test_repeated_dtypes_give_one_case_each_in_the_order_given():
    assert parse_dtypes("float32,float32") == ("float32",)
    assert parse_dtypes("bfloat16, float32,BFLOAT16") == ("bfloat16", "float32")


def test_the_seed_bound_is_exact_the_largest_uint32_is_accepted_the_next_refused():
    assert parse_seed(str(2**32 - 1)) == 2**32 - 1
    assert parse_seed("0") == 0
    for refused in (str(2**32), "-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="an integer from 0 to 2\\*\\*32 - 1"):
            parse_seed(refused)
