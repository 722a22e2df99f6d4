"""Golden outputs of an original implementation, with provenance, never silently rewritten.

A model's golden outputs are two files in the golden directory (`reference_outputs/`):
`NAME.npz` (one array per named input: `photo`, `random`, ...) and `NAME.json`, the
manifest: which implementation and versions computed them, on which device and dtype, from
which checkpoint (its digest) and which inputs (their digests and how they were made).
Writing refuses under `CI=true`, replaces existing files only with `update=True`, and puts
the pair in place as a whole or not at all; reading trusts neither file (golden/stored.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_parity.arrays import c_order_bytes
from pytest_parity.atomic import write_together
from pytest_parity.errors import CheckpointError
from pytest_parity.golden.stored import GOLDEN_FORMAT, GoldenError, read_arrays, read_manifest

__all__ = ["GOLDEN_FORMAT", "Golden", "GoldenError", "array_digest", "paths",
           "provenance_problems", "read", "write"]


@dataclass
class Golden:
    outputs: dict[str, np.ndarray]
    manifest: dict[str, Any]


def array_digest(array: np.ndarray) -> str:
    """sha256 over an array's shape, dtype and C-order bytes (pins an input or a checkpoint)."""
    array = np.asarray(array)
    sha = hashlib.sha256(f"{array.shape}\0{array.dtype}\0".encode())
    sha.update(c_order_bytes(array))
    return sha.hexdigest()


def paths(directory: str | Path, name: str) -> tuple[Path, Path]:
    """NAME.npz and NAME.json in the golden directory.

    Raises:
        GoldenError: `name` is not a plain file name (empty, a path, '.' or '..').
    """
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise GoldenError(f"{Path(directory)}: {name!r} is not a golden file name "
                          "(a name without '/' or NUL)")
    return Path(directory) / f"{name}.npz", Path(directory) / f"{name}.json"


def write(directory: str | Path, name: str, outputs: Mapping[str, np.ndarray],
          manifest: Mapping[str, Any], *, update: bool = False) -> list[Path]:
    """Write NAME.npz and NAME.json, both or neither (the old pair stays if either fails).

    Raises:
        GoldenError: under CI=true (CI never writes goldens), or the files exist and `update`
            is False.
        WriteError: a file cannot be written; the files are as they were.
    """
    arrays_path, manifest_path = paths(directory, name)
    if os.environ.get("CI") == "true":
        raise GoldenError(f"{arrays_path}: refusing to write golden outputs under "
                          "CI=true; regenerate them on a workstation and commit them")
    existing = [str(path) for path in (arrays_path, manifest_path) if os.path.lexists(path)]
    if existing and not update:
        raise GoldenError(f"{', '.join(existing)}: golden outputs exist; pass "
                          "--update (parity golden) to rewrite them, then review the diff")
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {key: np.asarray(value) for key, value in outputs.items()}
    np.savez(buffer, **arrays)
    document = {"format": GOLDEN_FORMAT, "model": name, **manifest,
                "outputs": {key: {**manifest.get("outputs", {}).get(key, {}),
                                  "shape": list(np.shape(value)),
                                  "dtype": str(np.asarray(value).dtype),
                                  "digest": array_digest(np.asarray(value))}
                            for key, value in outputs.items()}}
    text = json.dumps(document, indent=1, sort_keys=True) + "\n"
    try:
        return write_together([(arrays_path, lambda tmp: tmp.write_bytes(buffer.getvalue())),
                               (manifest_path, lambda tmp: tmp.write_text(text))],
                              overwrite=update)
    except CheckpointError as error:  # one appeared while writing
        raise GoldenError(f"{error.path}: golden outputs exist; pass --update "
                          "(parity golden) to rewrite them, then review the diff") from None


def read(directory: str | Path, name: str) -> Golden:
    """Read a model's golden outputs and manifest.

    Raises:
        GoldenError: a file is missing, unreadable or damaged, or an array does not match its
            manifest.
    """
    arrays_path, manifest_path = paths(directory, name)
    for path in (arrays_path, manifest_path):
        if os.path.isdir(path):
            raise GoldenError(f"{path}: a directory, not a golden file")
        if not os.path.isfile(path):
            raise GoldenError(f"{path}: no golden outputs for {name!r}; write them "
                              f"with `parity golden {name}` (or `nox -s golden`)")
    manifest = read_manifest(manifest_path)
    outputs = read_arrays(arrays_path)
    described = manifest["outputs"]
    problems = [f"{key}: not the array its manifest describes" for key, output in outputs.items()
                if described.get(key, {}).get("digest") != array_digest(output)]
    problems += [f"{key}: in the manifest but not in the file"
                 for key in described if key not in outputs]
    if problems:
        raise GoldenError(f"{arrays_path} (manifest {manifest_path}): "
                          + "; ".join(problems))
    return Golden(outputs, manifest)


def provenance_problems(golden: Golden, checkpoint_digest: str,
                        input_digests: Mapping[str, str]) -> list[str]:
    """Why these goldens do not belong to this checkpoint and these inputs, if they do not.

    A mismatch here is not a parity failure: the goldens were computed from something else.
    """
    problems = []
    recorded = golden.manifest.get("checkpoint", {}).get("digest")
    if recorded != checkpoint_digest:
        problems.append(f"checkpoint digest {checkpoint_digest[:12]}… but the goldens were "
                        f"computed from {str(recorded)[:12]}…")
    for key, digest in input_digests.items():
        recorded = golden.manifest.get("outputs", {}).get(key, {}).get("input_digest")
        if recorded != digest:
            problems.append(f"input {key!r} digest {digest[:12]}… but the goldens were computed "
                            f"from {str(recorded)[:12]}…")
    return problems
