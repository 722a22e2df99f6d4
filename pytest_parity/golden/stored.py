"""Golden files as stored: GoldenError, and reading an .npz or a manifest without trusting it.

A golden file may be truncated, edited or damaged; reading it either returns what was
written or raises a GoldenError naming the file. Each .npy member's header (shape x itemsize)
is held to the member's size before any array is made, so a damaged header cannot ask for
terabytes; object arrays are never unpickled.
"""

from __future__ import annotations

import io
import json
import math
import struct
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from pytest_parity.errors import ParityError

GOLDEN_FORMAT = "pytest-parity-golden/1"

# What zipfile, zlib and numpy raise on damaged bytes (a CRC, a header, a length, a method).
_DAMAGE = (OSError, ValueError, EOFError, KeyError, IndexError, NotImplementedError,
           RuntimeError, OverflowError, MemoryError, RecursionError, zipfile.BadZipFile,
           zlib.error, struct.error)
_DEFLATE_RATIO = 1032  # deflate's largest expansion: a bound on a member's claimed size
_HEADERS = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "a number", float: "a number", type(None): "null"}


class GoldenError(ParityError):
    """Golden outputs that are missing, unreadable, refused, or belong to other inputs."""


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…"


def _damaged(path: Path, problem: str) -> GoldenError:
    return GoldenError(f"{path}: {_short(problem, 400)}")


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path,
            archive_size: int) -> np.ndarray:
    """One .npy member's array; its size claims checked before anything is allocated."""
    key = info.filename[:-len(".npy")]
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _damaged(path, f"{key}: compression method {info.compress_type} (np.savez "
                             "writes stored or deflated members)")
    ratio = 1 if info.compress_type == zipfile.ZIP_STORED else _DEFLATE_RATIO
    if info.compress_size > archive_size or info.file_size > ratio * info.compress_size + 64:
        raise _damaged(path, f"{key}: the member claims {info.file_size} bytes in a file of "
                             f"{archive_size}")
    raw = archive.read(info)  # bounded just above; checks the member's CRC
    stream = io.BytesIO(raw)
    try:
        with warnings.catch_warnings():  # a damaged header's escapes warn as Python source
            warnings.simplefilter("ignore")
            version = npy_format.read_magic(stream)
            if version not in _HEADERS:
                raise ValueError(f"format version {version} (1.0 or 2.0 expected)")
            shape, fortran_order, dtype = _HEADERS[version](stream)
    except Exception as error:  # numpy parses the header as Python: tokenize's errors, too
        raise _damaged(path, f"{key}: unreadable .npy header ({type(error).__name__}: "
                             f"{error})") from None
    if dtype.hasobject:
        raise _damaged(path, f"{key}: an object array (dtype {dtype}); golden outputs are "
                             "numeric and pickled objects are never loaded")
    if any(size < 0 for size in shape):
        raise _damaged(path, f"{key}: shape {shape} has a negative size")
    offset = stream.tell()
    claimed = math.prod(shape) * dtype.itemsize
    if claimed != len(raw) - offset:
        raise _damaged(path, f"{key}: shape {shape} of {dtype} needs {claimed} bytes; the "
                             f"member holds {len(raw) - offset}")
    flat = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=offset)
    array = flat.reshape(shape[::-1]).T if fortran_order else flat.reshape(shape)
    return array.copy()


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The named arrays of a golden .npz.

    Raises:
        GoldenError: the file is unreadable, damaged, or holds other than numeric arrays.
    """
    try:
        data = path.read_bytes()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            arrays: dict[str, np.ndarray] = {}
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise _damaged(path, f"member {info.filename!r} is not an .npy array")
                if info.filename[:-4] in arrays:
                    raise _damaged(path, f"two members named {info.filename!r}")
                arrays[info.filename[:-4]] = _member(archive, info, path, len(data))
            return arrays
    except _DAMAGE as error:
        raise _damaged(path, f"unreadable golden outputs ({type(error).__name__}: {error})"
                       ) from None


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _field_problems(owner: str, document: dict[str, Any], fields: dict[str, type]) -> list[str]:
    return [f"{owner}{field!r} is {_json_type(document[field])}, not {_JSON_TYPES[kind]}"
            for field, kind in fields.items()
            if field in document and not isinstance(document[field], kind)]


def manifest_problems(manifest: Any) -> list[str]:
    """What makes a parsed manifest unusable: not an object, a wrong format, a field of the
    wrong type (outputs, each output and its digests, the checkpoint)."""
    if not isinstance(manifest, dict):
        return [f"the manifest is {_json_type(manifest)}, not an object"]
    if manifest.get("format") != GOLDEN_FORMAT:
        return [f"not a {GOLDEN_FORMAT} manifest (format "
                f"{_short(repr(manifest.get('format')), 60)})"]
    problems = _field_problems("", manifest, {"outputs": dict, "checkpoint": dict})
    if "outputs" not in manifest:
        problems.append("no 'outputs' in the manifest")
    if isinstance(manifest.get("checkpoint"), dict):
        problems += _field_problems("checkpoint ", manifest["checkpoint"], {"digest": str})
    outputs = manifest.get("outputs")
    for key, output in outputs.items() if isinstance(outputs, dict) else ():
        if not isinstance(output, dict):
            problems.append(f"output {key!r} is {_json_type(output)}, not an object")
            continue
        if "digest" not in output:
            problems.append(f"output {key!r} has no digest")
        problems += _field_problems(f"output {key!r}: ", output,
                                    {"digest": str, "input_digest": str})
    return problems


def read_manifest(path: Path) -> dict[str, Any]:
    """A golden manifest (NAME.json), its fields checked.

    Raises:
        GoldenError: the file is unreadable, not JSON, or not a golden manifest.
    """
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise _damaged(path, "unreadable manifest: nested too deeply") from None
    except (OSError, ValueError) as error:
        raise _damaged(path, f"unreadable manifest ({type(error).__name__}: {error})"
                       ) from None
    problems = manifest_problems(manifest)
    if problems:
        raise _damaged(path, "; ".join(problems))
    return manifest
