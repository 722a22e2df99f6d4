"""Canonical checkpoints as .npz and .json, the formats that consumers in other languages read.

npz keeps each tensor with its shape under its canonical path. JSON holds one object per
tensor: shape, dtype, layout and the values flattened in C order; NaN and infinities, which
JSON lacks, are written as the strings "NaN", "Infinity", "-Infinity". bfloat16 has no numpy
or JSON type: its values are written as float32 (exact, bfloat16 is a prefix of float32) and
the original dtype is declared (npz: `__dtypes__.json` entry; JSON: the `dtype` field).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np

from pytest_parity.atomic import write_atomically
from pytest_parity.checkpoint.format import Checkpoint

JSON_FORMAT = "pytest-parity-json/1"
DTYPES_ENTRY = "__dtypes__.json"


def _portable(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float32) if str(array.dtype) == "bfloat16" else array


def _write_npz(temporary: Path, checkpoint: Checkpoint) -> None:
    dtypes = {name: str(array.dtype) for name, array in checkpoint.arrays.items()}
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as npz:
        for name in sorted(checkpoint.arrays):
            buffer = io.BytesIO()
            np.save(buffer, _portable(checkpoint.arrays[name]), allow_pickle=False)
            npz.writestr(f"{name}.npy", buffer.getvalue())
        npz.writestr(DTYPES_ENTRY, json.dumps(dtypes, indent=1, sort_keys=True))


def _json_value(value: float | int | bool) -> float | int | bool | str:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _write_json(temporary: Path, checkpoint: Checkpoint) -> None:
    tensors = {}
    for name in sorted(checkpoint.arrays):
        array = checkpoint.arrays[name]
        values = _portable(array).ravel().tolist()
        tensors[name] = {"shape": list(array.shape), "dtype": str(array.dtype),
                         "layout": checkpoint.layouts.get(name, ""),
                         "values": [_json_value(value) for value in values]}
    document = {"format": JSON_FORMAT, "architecture": checkpoint.architecture,
                "source": checkpoint.source, "digest": checkpoint.digest(), "tensors": tensors}
    with temporary.open("w") as handle:
        json.dump(document, handle, allow_nan=False, separators=(",", ":"))


def export(checkpoint: Checkpoint, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a checkpoint as .npz or .json (by suffix), atomically and without clobbering."""
    writer = _write_npz if Path(path).suffix == ".npz" else _write_json
    return write_atomically(path, lambda temporary: writer(temporary, checkpoint),
                            overwrite=overwrite)
