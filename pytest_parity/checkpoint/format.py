"""Canonical checkpoints: framework-neutral HDF5 files, one group per module, layouts declared.

The format is described in docs/checkpoint-format.md. Reading never executes code, writing is
atomic (a temporary file beside the target, then a link that refuses to replace a file), and an
existing file is replaced only when asked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path

import h5py
import ml_dtypes
import numpy as np

from pytest_parity.atomic import write_atomically
from pytest_parity.checkpoint.digest import combine_digests, content_digest, tensor_digest
from pytest_parity.checkpoint.probe import probe
from pytest_parity.checkpoint.reading import (
    FORMAT_NAME,
    FORMAT_VERSION,
    HDF5_FAILURES,
    SUPPORTED_DTYPES,
    attempt,
    read_structure,
)
from pytest_parity.environment import installed_versions
from pytest_parity.errors import CheckpointError
from pytest_parity.threads import submit

# Stored as raw bits because HDF5 has no such type; the dataset's `dtype` attribute says so.
STORED_AS_BITS = {"bfloat16": (ml_dtypes.bfloat16, np.uint16)}


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
def writer_versions() -> dict[str, str]:
    """The `written_by` attribute of a file this process writes: the libraries' versions."""
    return {name: version for name, version in installed_versions().items() if version}


def architecture_problems(architecture: str) -> list[str]:
    if not architecture or "/" in architecture:
        return [f"architecture {architecture!r} must be a non-empty name without '/'"]
    return []


def tensor_problems(name: str, array: np.ndarray) -> list[str]:
    """What keeps one tensor from being written under `name` (its path and dtype)."""
    problems = []
    if not name or name.startswith("/") or name.endswith("/") or "//" in name:
        problems.append(f"{name!r}: a canonical path is 'group/.../name', without empty parts")
    if str(np.asarray(array).dtype) not in SUPPORTED_DTYPES:
        problems.append(f"{name}: dtype {np.asarray(array).dtype} is not one of "
                        f"{sorted(SUPPORTED_DTYPES)}")
    return problems


def _check_writable(checkpoint: Checkpoint) -> list[str]:
    problems = architecture_problems(checkpoint.architecture)
    for name, array in checkpoint.arrays.items():
        problems.extend(tensor_problems(name, array))
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


def write_header(h5: h5py.File, architecture: str, source: str,
                 written_by: dict[str, str]) -> dict[str, h5py.Group]:
    """The root attributes known before any tensor; the groups by path, the root's ''."""
    h5.attrs["format"] = FORMAT_NAME
    h5.attrs["format_version"] = FORMAT_VERSION
    h5.attrs["architecture"] = architecture
    h5.attrs["source"] = source
    h5.attrs["written_by"] = json.dumps(written_by or writer_versions())
    return {"": h5.create_group(architecture)}


def write_tensor(groups: dict[str, h5py.Group], name: str, array: np.ndarray,
                 layout: str) -> dict[str, str]:
    """One tensor's dataset under its canonical path; its manifest entry."""
    array = np.asarray(array)
    dtype_name = str(array.dtype)
    stored = array.view(STORED_AS_BITS[dtype_name][1]) if dtype_name in STORED_AS_BITS \
        else array
    parent, _, leaf = name.rpartition("/")
    dataset = _group(groups, parent).create_dataset(leaf, data=stored)
    dataset.attrs["layout"] = layout
    if dtype_name in STORED_AS_BITS:
        dataset.attrs["dtype"] = dtype_name
    return {"layout": layout, "dtype": dtype_name}


def write_footer(h5: h5py.File, manifest: dict[str, dict[str, str]], digest: str) -> None:
    """The root attributes known once every tensor is written: the manifest, the digest."""
    h5.attrs["tensors"] = json.dumps(manifest, separators=(",", ":"))
    h5.attrs["digest"] = digest


def _write_file(path: Path, checkpoint: Checkpoint) -> None:
    # Hashing runs in the pool while this thread writes; the digest attribute comes last.
    hashing = {name: submit(tensor_digest, array) for name, array in checkpoint.arrays.items()}
    with h5py.File(path, "w") as h5:
        groups = write_header(h5, checkpoint.architecture, checkpoint.source,
                              checkpoint.written_by)
        manifest = {name: write_tensor(groups, name, checkpoint.arrays[name],
                                       checkpoint.layouts[name])
                    for name in sorted(checkpoint.arrays)}
        write_footer(h5, manifest, combine_digests(
            checkpoint.arrays, {name: future.result() for name, future in hashing.items()}))


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


def read_array(dataset: h5py.h5d.DatasetID, dtype_name: str) -> np.ndarray:
    """The tensor's data; its dtype, shape and storage were checked by read_structure."""
    array = np.empty(dataset.shape, dataset.dtype)
    if array.size:
        dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, array)
    return array.view(STORED_AS_BITS[dtype_name][0]) if dtype_name in STORED_AS_BITS \
        else array


def probed(path: str | Path, architecture: str | None = None) -> Path:
    """The file, its structure checked by the probe process (probe.py) before this process
    opens it.

    Raises:
        CheckpointError: the file is missing, or its structure is damaged or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, ["no such file"])
    try:
        problems = probe(path, architecture)
    except OSError as error:
        raise CheckpointError(path, [f"its structure cannot be checked: {error}"]) from None
    if problems:
        raise CheckpointError(path, problems)
    return path


def load(path: str | Path, *, architecture: str | None = None,
         verify_digest: bool = True) -> Checkpoint:
    """Read a checkpoint and verify its format, root group and (unless told not to) digest.

    The file's structure is read first by a child process (probe.py): a damaged file can make
    the HDF5 library loop forever or crash. Hashing costs about as much as the read itself
    here (sha256 at ~1.8 GB/s, reads from the page cache at ~4 GB/s); `verify_digest=False`
    skips it for a file already verified.

    Raises:
        CheckpointError: the file is missing, not HDF5, damaged, of another format or
            version, or its contents do not match its digest; every problem is listed.
    """
    path = probed(path, architecture)
    arrays: dict[str, np.ndarray] = {}
    hashing = {}  # in the pool, while this thread reads the next tensor
    try:
        with h5py.File(path, "r") as h5:
            structure, problems = read_structure(h5, path.stat().st_size, architecture)
            for key, dataset in structure.datasets.items() if not problems else ():
                array = attempt(problems, key, partial(
                    read_array, dataset, structure.manifest[key]["dtype"]))
                if array is not None:
                    arrays[key] = array
                    if verify_digest:
                        hashing[key] = submit(tensor_digest, array)
    except HDF5_FAILURES as error:
        raise CheckpointError(path, [f"not a readable HDF5 file ({type(error).__name__}: "
                                     f"{error})"]) from None
    if verify_digest and not problems:
        digest = combine_digests(arrays, {key: future.result() for key, future in hashing.items()})
        if digest != structure.digest:
            problems.append(f"content digest {digest[:12]}… does not match the recorded "
                            f"{structure.digest[:12]}…: the file is corrupt or was edited")
    if problems:
        raise CheckpointError(path, problems)
    layouts = {key: structure.manifest[key]["layout"] for key in arrays}
    return Checkpoint(structure.architecture, arrays, layouts, structure.source,
                      structure.written_by)
