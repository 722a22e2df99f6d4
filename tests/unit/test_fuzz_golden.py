"""Fuzz: a damaged golden pair reads back exactly as written, or is a [parity] error naming
the damaged file (never a traceback, a hang, or a pass on damaged arrays).

`pytest tests/unit/test_fuzz_golden.py --fuzz-examples=1500` for a campaign.
"""

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_parity.golden import read, write
from tests.support.fuzz import fuzz_settings, outcome

OUTPUTS = {"photo": np.arange(12, dtype=np.float32).reshape(3, 4),
           "random": np.linspace(-1.0, 1.0, 5),
           "ids": np.array([[3, 1], [4, 1]], dtype=np.int64).T}  # Fortran order on disk
MANIFEST = {"source": "fuzz", "checkpoint": {"digest": "a" * 64},
            "outputs": {"photo": {"input_digest": "b" * 64, "how": "seed 0"}}}

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8)


@pytest.fixture
def pristine(tmp_path, monkeypatch) -> dict[str, bytes]:
    """The bytes of a small golden pair, written the way `parity golden` writes it."""
    monkeypatch.delenv("CI", raising=False)
    arrays, manifest = write(tmp_path / "pristine", "net", OUTPUTS, MANIFEST)
    return {"npz": arrays.read_bytes(), "json": manifest.read_bytes()}


@st.composite
def damaged_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    """Byte flips, overwrites, insertions and truncations of `data`."""
    damaged = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(damaged) - 1, 0)))
        kind = draw(st.sampled_from(["flip", "overwrite", "insert", "truncate"]))
        if kind == "flip":
            damaged[at:at + 1] = bytes([damaged[at] ^ draw(st.integers(1, 255))]) \
                if damaged else b""
        elif kind == "overwrite":
            patch = draw(st.binary(min_size=1, max_size=16))
            damaged[at:at + len(patch)] = patch
        elif kind == "insert":
            damaged[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del damaged[at:]
    return bytes(damaged)


HEADERS = st.fixed_dictionaries({
    "descr": st.sampled_from(["<f4", ">f4", "<f8", "<i8", "<i4", "|u1", "|b1", "<c8", "|O",
                              "<U2", "|V0"]),
    "fortran_order": st.booleans(),
    "shape": st.lists(st.integers(-2, 2**62) | st.integers(0, 6), max_size=4).map(tuple)})


def _with_header(member: bytes, header: dict[str, Any]) -> bytes:
    """The member's data behind a new .npy header."""
    stream = io.BytesIO(member)
    np.lib.format.read_magic(stream)
    np.lib.format.read_array_header_1_0(stream)
    written = io.BytesIO()
    np.lib.format.write_array_header_1_0(written, header)
    return written.getvalue() + member[stream.tell():]


@st.composite
def damaged_member(draw: st.DrawFn, npz: bytes) -> bytes:
    """The .npz rebuilt with one .npy member's bytes damaged, or its header replaced by a
    drawn one (any shape up to 2**62, object and odd dtypes): the archive is sound (its CRCs
    match), so what is read is the damaged header or array."""
    with zipfile.ZipFile(io.BytesIO(npz)) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    chosen = draw(st.sampled_from(sorted(members)))
    members[chosen] = (_with_header(members[chosen], draw(HEADERS)) if draw(st.booleans())
                       else draw(damaged_bytes(members[chosen])))
    rebuilt = io.BytesIO()
    with zipfile.ZipFile(rebuilt, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return rebuilt.getvalue()


def _places(document: Any, path: tuple = ()) -> list[tuple]:
    """Every key path into a JSON document (the root is ())."""
    found = [path]
    if isinstance(document, dict):
        for key, value in document.items():
            found += _places(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += _places(value, (*path, index))
    return found


NESTED = "\u2063nested\u2063"  # a placeholder string, replaced by the nesting in the text


def _nesting(depth: int, opener: str) -> str:
    """A JSON value nested `depth` deep, as text (json.dumps would recurse as deep)."""
    return (opener * depth if opener == "[" else '{"x": ' * depth) + "0" + (
        "]" if opener == "[" else "}") * depth


@st.composite
def damaged_manifest(draw: st.DrawFn, text: bytes) -> bytes:
    """The manifest with a value replaced (by drawn JSON of any type, or nesting up to 3,000
    deep), a key deleted, or its text damaged."""
    document = json.loads(text)
    kind = draw(st.sampled_from(["replace", "delete", "nest", "text"]))
    if kind == "text":
        return draw(damaged_bytes(text))
    place = draw(st.sampled_from(_places(document)))
    if kind == "delete" and place:
        parent = document
        for key in place[:-1]:
            parent = parent[key]
        del parent[place[-1]]
    else:
        value = NESTED if kind == "nest" else draw(JSON_VALUES)
        if not place:
            document = value
        else:
            parent = document
            for key in place[:-1]:
                parent = parent[key]
            parent[place[-1]] = value
    text_out = json.dumps(document)
    if kind == "nest":
        nesting = _nesting(draw(st.integers(1, 3000)), draw(st.sampled_from("[{")))
        text_out = text_out.replace(json.dumps(NESTED), nesting)
    return text_out.encode()


def _assert_exactly_the_originals(outputs: dict[str, np.ndarray]) -> None:
    assert sorted(outputs) == sorted(OUTPUTS)
    for key, original in OUTPUTS.items():
        assert outputs[key].dtype == original.dtype and outputs[key].shape == original.shape
        assert outputs[key].tobytes() == original.tobytes(), key


def _check(work: Path, files: dict[str, bytes], damaged: str, ci: bool, monkeypatch) -> None:
    for suffix, data in files.items():
        (work / f"net.{suffix}").write_bytes(data)
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    kind, result = outcome(lambda: read(work, "net"), [work / f"net.{damaged}"])
    if kind == "ok":
        _assert_exactly_the_originals(result.outputs)


def test_a_damaged_npz_reads_back_exactly_or_is_named(request, tmp_path, pristine,
                                                      monkeypatch):
    @fuzz_settings(request)
    @given(data=damaged_bytes(pristine["npz"]), ci=st.booleans())
    def damaged_npz(data, ci):
        _check(tmp_path, {"npz": data, "json": pristine["json"]}, "npz", ci, monkeypatch)

    damaged_npz()


def test_a_damaged_manifest_reads_back_exactly_or_is_named(request, tmp_path, pristine,
                                                           monkeypatch):
    @fuzz_settings(request)
    @given(text=damaged_manifest(pristine["json"]), ci=st.booleans())
    def damaged_json(text, ci):
        _check(tmp_path, {"npz": pristine["npz"], "json": text}, "json", ci, monkeypatch)

    damaged_json()


def test_a_damaged_npy_member_reads_back_exactly_or_is_named(request, tmp_path, pristine,
                                                             monkeypatch):
    @fuzz_settings(request)
    @given(data=damaged_member(pristine["npz"]), ci=st.booleans())
    def damaged_npy(data, ci):
        _check(tmp_path, {"npz": data, "json": pristine["json"]}, "npz", ci, monkeypatch)

    damaged_npy()
