"""Canonical checkpoints: framework-neutral HDF5 files, one group per module, layouts declared.

The format is described in docs/checkpoint-format.md. Reading never executes code, writing is
atomic (a temporary file beside the target, then a link that refuses to replace a file), and an
existing file is replaced only when asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import h5py
import ml_dtypes
import numpy as np

from pytest_parity.atomic import write_atomically
from pytest_parity.checkpoint.digest import combine_digests, content_digest, tensor_digest
from pytest_parity.environment import installed_versions
from pytest_parity.errors import CheckpointError
from pytest_parity.threads import submit

FORMAT_NAME = "pytest-parity-checkpoint"
FORMAT_VERSION = 1
# Stored as raw bits because HDF5 has no such type; the dataset's `dtype` attribute says so.
_STORED_AS_BITS = {"bfloat16": (ml_dtypes.bfloat16, np.uint16)}
_SUPPORTED_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "float16", "bfloat16",
                     "float32", "float64"}


@dataclass
class Checkpoint:
    """A model's tensors under canonical paths ('layer1/block0/conv1/kernel'), with layouts."""

    architecture: str
    arrays: dict[str, np.ndarray]
    layouts: dict[str, str]
    source: str = "unknown"
    written_by: dict[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        return content_digest(self.arrays)


@cache
def _writer_versions() -> dict[str, str]:
    return {name: version for name, version in installed_versions().items() if version}


def _check_writable(checkpoint: Checkpoint) -> list[str]:
    problems = []
    if not checkpoint.architecture or "/" in checkpoint.architecture:
        problems.append(f"architecture {checkpoint.architecture!r} must be a non-empty name "
                        "without '/'")
    for name, array in checkpoint.arrays.items():
        if not name or name.startswith("/") or name.endswith("/") or "//" in name:
            problems.append(f"{name!r}: a canonical path is 'group/.../name', without empty parts")
        if str(np.asarray(array).dtype) not in _SUPPORTED_DTYPES:
            problems.append(f"{name}: dtype {np.asarray(array).dtype} is not one of "
                            f"{sorted(_SUPPORTED_DTYPES)}")
        if name not in checkpoint.layouts:
            problems.append(f"{name}: no layout declared (e.g. 'HWIO', 'IO', 'C', 'scalar')")
    problems.extend(f"{name}: layout declared for a tensor that is not in the checkpoint"
                    for name in checkpoint.layouts if name not in checkpoint.arrays)
    groups = {"/".join(parts[:depth]) for parts in (name.split("/") for name in checkpoint.arrays)
              for depth in range(1, len(parts))}
    problems.extend(f"{name}: is both a tensor and a group of tensors"
                    for name in sorted(groups & checkpoint.arrays.keys()))
    return problems


def _group(groups: dict[str, h5py.Group], path: str) -> h5py.Group:
    """The group at `path`, created with its parents once (path lookups in h5py are slow)."""
    if path not in groups:
        parent, _, leaf = path.rpartition("/")
        groups[path] = _group(groups, parent).create_group(leaf)
    return groups[path]


def _write_file(path: Path, checkpoint: Checkpoint) -> None:
    # Hashing runs in the pool while this thread writes; the digest attribute comes last.
    hashing = {name: submit(tensor_digest, array) for name, array in checkpoint.arrays.items()}
    with h5py.File(path, "w") as h5:
        h5.attrs["format"] = FORMAT_NAME
        h5.attrs["format_version"] = FORMAT_VERSION
        h5.attrs["architecture"] = checkpoint.architecture
        h5.attrs["source"] = checkpoint.source
        h5.attrs["written_by"] = json.dumps(checkpoint.written_by or _writer_versions())
        groups = {"": h5.create_group(checkpoint.architecture)}
        manifest = {}
        for name in sorted(checkpoint.arrays):
            array = np.asarray(checkpoint.arrays[name])
            dtype_name = str(array.dtype)
            manifest[name] = {"layout": checkpoint.layouts[name], "dtype": dtype_name}
            stored = array.view(_STORED_AS_BITS[dtype_name][1]) if dtype_name in _STORED_AS_BITS \
                else array
            parent, _, leaf = name.rpartition("/")
            dataset = _group(groups, parent).create_dataset(leaf, data=stored)
            dataset.attrs["layout"] = checkpoint.layouts[name]
            if dtype_name in _STORED_AS_BITS:
                dataset.attrs["dtype"] = dtype_name
        h5.attrs["tensors"] = json.dumps(manifest, separators=(",", ":"))
        h5.attrs["digest"] = combine_digests(
            checkpoint.arrays, {name: future.result() for name, future in hashing.items()})


def save(path: str | Path, checkpoint: Checkpoint, *, overwrite: bool = False) -> Path:
    """Write a checkpoint atomically; an existing file is replaced only with overwrite=True.

    Raises:
        CheckpointError: the checkpoint is not writable as is, or the file exists.
    """
    problems = _check_writable(checkpoint)
    if problems:
        raise CheckpointError(path, problems)
    return write_atomically(path, lambda temporary: _write_file(temporary, checkpoint),
                            overwrite=overwrite)


def _datasets(group: h5py.Group, prefix: str = "") -> Iterator[tuple[str, h5py.Dataset]]:
    for name, item in group.items():
        if isinstance(item, h5py.Group):
            yield from _datasets(item, f"{prefix}{name}/")
        else:
            yield f"{prefix}{name}", item


def _read_array(name: str, dataset: h5py.Dataset, declared: Mapping[str, str],
                problems: list[str]) -> np.ndarray | None:
    dtype_name = declared.get("dtype", "?")
    array = np.asarray(dataset[()])
    if dtype_name in _STORED_AS_BITS:
        real_dtype, bits = _STORED_AS_BITS[dtype_name]
        if array.dtype != bits:
            problems.append(f"{name}: declared {dtype_name} but stored as {array.dtype}")
            return None
        return array.view(real_dtype)
    if str(array.dtype) != dtype_name:
        problems.append(f"{name}: declared {dtype_name} but stored as {array.dtype}")
        return None
    return array


def _read_manifest(h5: h5py.File, problems: list[str]) -> dict[str, dict[str, str]]:
    try:
        manifest = json.loads(h5.attrs["tensors"])
    except (KeyError, ValueError, TypeError):
        problems.append("the root attribute 'tensors' (each tensor's layout and dtype) is "
                        "missing or not JSON")
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _read_header(h5: h5py.File, architecture: str | None) -> tuple[str, list[str]]:
    # Python values, so that messages print 99, not np.int64(99).
    attrs = {key: getattr(value, "item", lambda v=value: v)() for key, value in h5.attrs.items()}
    if attrs.get("format") != FORMAT_NAME:
        return "", [f"not a {FORMAT_NAME} file (root attribute format={attrs.get('format')!r})"]
    problems = []
    if attrs.get("format_version") != FORMAT_VERSION:
        problems.append(f"format version {attrs.get('format_version')!r} is not supported; "
                        f"this pytest-parity reads version {FORMAT_VERSION}")
    name = str(attrs.get("architecture", ""))
    if architecture is not None and name != architecture:
        problems.append(f"architecture {name!r} where {architecture!r} was expected")
    groups = list(h5.keys())
    if groups != [name]:
        problems.append(f"the root must hold one group named {name!r}, found {groups}")
    return name, problems


def load(path: str | Path, *, architecture: str | None = None,
         verify_digest: bool = True) -> Checkpoint:
    """Read a checkpoint and verify its format, root group and (unless told not to) digest.

    Hashing costs about as much as the read itself here (sha256 at ~1.8 GB/s, reads from the
    page cache at ~4 GB/s); `verify_digest=False` skips it for a file already verified.

    Raises:
        CheckpointError: the file is missing, not HDF5, truncated, of another format or
            version, or its contents do not match its digest; every problem is listed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, ["no such file"])
    try:
        with h5py.File(path, "r") as h5:
            name, problems = _read_header(h5, architecture)
            if problems:
                raise CheckpointError(path, problems)
            manifest = _read_manifest(h5, problems)
            arrays: dict[str, np.ndarray] = {}
            layouts: dict[str, str] = {}
            hashing = {}  # in the pool, while this thread reads the next tensor
            stored = dict(_datasets(h5[name]))
            problems.extend(f"{key}: declared in the root manifest but not in the file"
                            for key in sorted(manifest.keys() - stored.keys()))
            for key, dataset in stored.items():
                if key not in manifest:
                    problems.append(f"{key}: a tensor that the root manifest does not declare")
                    continue
                array = _read_array(key, dataset, manifest[key], problems)
                if array is not None:
                    arrays[key] = array
                    layouts[key] = str(manifest[key].get("layout", ""))
                    if verify_digest:
                        hashing[key] = submit(tensor_digest, array)
            checkpoint = Checkpoint(name, arrays, layouts, str(h5.attrs.get("source", "")),
                                    json.loads(h5.attrs.get("written_by", "{}")))
            stored_digest = h5.attrs.get("digest")
    except OSError as error:
        raise CheckpointError(path, [f"not a readable HDF5 file ({error})"]) from None
    if verify_digest and not problems:
        digest = combine_digests(arrays, {key: future.result() for key, future in hashing.items()})
        if digest != stored_digest:
            problems.append(f"content digest {digest[:12]}… does not match the recorded "
                            f"{str(stored_digest)[:12]}…: the file is corrupt or was edited")
    if problems:
        raise CheckpointError(path, problems)
    return checkpoint
