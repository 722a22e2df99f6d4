import argparse

import pytest

from pytest_parity.options import parse_device


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
