"""Every error the plugin raises starts with exactly one "[parity] ": the error types add it,
the raising sites do not write it."""

import numpy as np
import pytest

from pytest_parity.atomic import WriteError
from pytest_parity.compare import StructureMismatch, assert_close
from pytest_parity.errors import PREFIX, CheckpointError, ParityError
from pytest_parity.mapping import MappingError, Rule, load_mapping
from pytest_parity.registry import Pair, UnknownArchitecture


def _once(error: BaseException) -> str:
    text = str(error)
    assert text.startswith(f"{PREFIX} ") and not text.startswith(f"{PREFIX} {PREFIX}"), text
    assert text.count(PREFIX) == 1, text
    return text


def _raised(action) -> BaseException:
    with pytest.raises((ParityError, StructureMismatch)) as caught:
        action()
    return caught.value


def _bad_mapping(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"format": "nothing"}')
    return lambda: load_mapping(path)


@pytest.mark.parametrize("make", [
    lambda tmp_path: lambda: Pair("p", torch_model=object, flax_model=object, mapping=None),
    lambda tmp_path: lambda: Rule("a.{i}.w", "b.w", ""),
    _bad_mapping,
    lambda tmp_path: lambda: assert_close(np.ones(2), np.ones(3)),
    lambda tmp_path: lambda: assert_close({"a": np.ones(2)}, {"b": np.ones(2)}),
], ids=["pair", "rule", "mapping-file", "shapes", "structures"])
def test_bad_inputs_raise_one_prefix(make, tmp_path):
    _once(_raised(make(tmp_path)))


def test_error_types_add_the_prefix_once():
    for error in [ParityError("plain"), ParityError(f"{PREFIX} already prefixed"),
                  MappingError("m"), UnknownArchitecture("u"), StructureMismatch("s"),
                  CheckpointError("c.h5", ["one", "two"]), WriteError("w.json", "disk full")]:
        assert not _once(error).removeprefix(PREFIX).startswith("  ")
    assert ParityError(f"{PREFIX} x").message == ParityError("x").message == "x"
    assert str(CheckpointError("c.h5", ["a"])).splitlines() == ["[parity] c.h5: 1 problem",
                                                                "  - a"]
