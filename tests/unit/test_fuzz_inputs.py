"""Fuzzing what the other fuzz tests do not: torch and Flax files, the options, and write
destinations. Each outcome is a [parity] error naming the file (or the option), or a correct
result; never a traceback or a hang (tests/support/fuzz.py).

A zip-format .pt records each member's CRC-32 (checked before torch.load, which does not): a
read of a damaged one fails or returns the original values. .safetensors and Flax's .msgpack
carry no checksum, so a changed value inside one reads as that value: what can be held to is
that a read returns the same keys, shapes and dtypes, or says what is wrong. The canonical .h5
that `parity convert` makes from it records its digest from then on.
"""

import argparse
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_parity import cases
from pytest_parity.atomic import write_atomically
from tests.support.fuzz import fuzz_settings, outcome


def _damage(data: bytes, cut: int, offset: int, patch: bytes) -> bytes:
    """Overwrite at a drawn offset, then keep a drawn share of the bytes (1000: all)."""
    offset %= max(len(data), 1)
    damaged = data[:offset] + patch + data[offset + len(patch):]
    return damaged[: len(damaged) * cut // 1000]


DAMAGE = dict(cut=st.sampled_from([1000, 1000, 1000, 999, 900, 500, 10, 0]),
              offset=st.integers(0, 2**20),
              patch=st.binary(min_size=0, max_size=16))


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".msgpack"])
def test_damaged_framework_files_are_named_or_read_whole(tmp_path, request, suffix):
    torch = pytest.importorskip("torch")
    pytest.importorskip("flax")
    from pytest_parity.checkpoint import checkpoint_from_flax, checkpoint_from_torch
    from pytest_parity.checkpoint.flax_files import read_variables, write_variables
    from pytest_parity.checkpoint.torch_files import read_state_dict, write_state_dict
    from pytest_parity.mapping import flatten
    from tests.support.tinynet import TINYNET, torch_tinynet

    torch.manual_seed(0)
    state = {key: value.numpy() for key, value in torch_tinynet().state_dict().items()}
    original = tmp_path / f"tiny{suffix}"
    if suffix == ".msgpack":
        write_variables(original, TINYNET.mapping.canonical_to_flax(
            TINYNET.mapping.torch_to_canonical(state)[0]))
        read = read_variables

        def as_checkpoint(variables):
            return checkpoint_from_flax(variables, TINYNET)
    else:
        write_state_dict(original, state)
        read = read_state_dict

        def as_checkpoint(state):
            return checkpoint_from_torch(state, TINYNET)
    data = original.read_bytes()
    original_state = read(original)
    expected = {key: (np.shape(value), np.asarray(value).dtype)
                for key, value in flatten(read(original)).items()}
    path = tmp_path / f"damaged{suffix}"

    @given(**DAMAGE)
    def damaged(cut, offset, patch):
        path.write_bytes(_damage(data, cut, offset, patch))
        kind, result = outcome(lambda: read(path), [path])
        if kind == "ok" and suffix == ".pt":  # zip: every member's CRC-32 is checked
            same = result.keys() == original_state.keys() and all(
                np.array_equal(value, original_state[key]) for key, value in result.items())
            assert same, "a damaged .pt read as other values"
        if kind == "ok":
            found = {key: (np.shape(value), np.asarray(value).dtype)
                     for key, value in flatten(result).items()}
            if found != expected:  # a damaged name or shape: never accepted as the model's
                assert outcome(lambda: as_checkpoint(result), [])[0] == "error", found

    fuzz_settings(request)(damaged)()


OPTION_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", ",", "cpu,", "nan", "inf", "-0", "1e400", "-1", "2**32",
                     "4294967296", "9" * 5000, "none", "NONE", "float32,float32", "\x00",
                     "cpu gpu", "0x10", "1_000", "\uff11\uff12"]))  # full-width digits


@pytest.mark.parametrize("option", [row[0] for row in cases.OPTIONS])
def test_option_values_parse_or_say_what_is_expected(request, option):
    parse = next(row[1] for row in cases.OPTIONS if row[0] == option)

    @given(text=OPTION_TEXT)
    def parsed(text):
        try:
            value = parse(text)
        except argparse.ArgumentTypeError as error:
            assert str(error).startswith(f"Could not parse value: {text!r}. Expected ")
            return
        assert parse(value if isinstance(value, str) else
                     ",".join(value) if isinstance(value, tuple) else repr(value)) == value

    fuzz_settings(request)(parsed)()


OBSTACLES = ["free", "exists", "directory", "file-as-parent", "long-name", "deep-missing"]


def test_write_destinations_are_written_whole_or_named(tmp_path, request):
    counter = iter(range(10**9))

    @given(obstacle=st.sampled_from(OBSTACLES), overwrite=st.booleans(),
           payload=st.binary(max_size=64))
    def written(obstacle, overwrite, payload):
        root = tmp_path / str(next(counter))
        root.mkdir()
        path = root / "out.bin"
        if obstacle == "exists":
            path.write_bytes(b"old")
        elif obstacle == "directory":
            path.mkdir()
        elif obstacle == "file-as-parent":
            (root / "blocker").write_text("")
            path = root / "blocker" / "out.bin"
        elif obstacle == "long-name":
            path = root / ("n" * 300 + ".bin")
        elif obstacle == "deep-missing":
            path = root / "a" / "b" / "c" / "out.bin"
        kind, _ = outcome(lambda: write_atomically(
            path, lambda temporary: temporary.write_bytes(payload), overwrite=overwrite),
            [path])
        if kind == "ok":
            assert path.read_bytes() == payload
        elif obstacle == "exists":
            assert path.read_bytes() == b"old"  # refused: the old file intact
        leftovers = [name for _, _, names in os.walk(root) for name in names
                     if name.endswith(".tmp")]
        assert not leftovers, leftovers

    fuzz_settings(request)(written)()
