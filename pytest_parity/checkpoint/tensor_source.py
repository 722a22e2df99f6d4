"""A checkpoint's tensors read a few at a time: the streamed check reads each block's just
before it runs, and never holds the whole model.

`StoredTensors` opens a canonical file as `load` does (its structure probed in a child
process first, then checked here before any tensor is read) and reads the tensors asked for;
each tensor is hashed as it is read, and `verify()` checks the content digest (reading and
hashing any tensor no block read): a damaged file fails the check, even after its blocks
passed.
`HeldTensors` serves a Checkpoint already in memory (a small pair's) the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple, Protocol

import h5py
import numpy as np

from pytest_parity.checkpoint.digest import combine_digests, tensor_digest
from pytest_parity.checkpoint.format import Checkpoint, probed, read_array
from pytest_parity.checkpoint.reading import HDF5_FAILURES, read_structure
from pytest_parity.errors import CheckpointError

MEMORY = "<memory>"


class TensorSource(Protocol):
    """Where a streamed check reads its tensors from."""

    where: str  # the file, for messages
    architecture: str

    def paths(self) -> list[str]: ...

    def shape_of(self, key: str) -> tuple[int, ...]: ...

    def read(self, keys: Iterable[str]) -> dict[str, np.ndarray]: ...

    def verify(self) -> None: ...

    def close(self) -> None: ...


class _Seen(NamedTuple):  # what the digest needs of a tensor already let go
    shape: tuple[int, ...]
    dtype: np.dtype


class HeldTensors:
    """A Checkpoint in memory, read as a file is."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint, self.where, self.architecture = checkpoint, MEMORY, \
            checkpoint.architecture

    def paths(self) -> list[str]:
        return sorted(self.checkpoint.arrays)

    def shape_of(self, key: str) -> tuple[int, ...]:
        return tuple(self.checkpoint.arrays[key].shape)

    def read(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        arrays = self.checkpoint.arrays
        absent = [key for key in keys if key not in arrays]
        if absent:
            raise CheckpointError(MEMORY, [f"{key}: not in the checkpoint" for key in absent])
        return {key: arrays[key] for key in keys}

    def verify(self) -> None:
        """Nothing to verify: the arrays are the ones given."""

    def close(self) -> None:
        """Nothing to close."""


class StoredTensors:
    """A canonical checkpoint file, its structure checked, its tensors read when asked.

    Raises (on opening):
        CheckpointError: the file is missing, not HDF5, damaged or of another format, every
            problem listed with its key.
    """

    def __init__(self, path: str | Path, architecture: str | None = None) -> None:
        path = probed(path, architecture)
        self.where = str(path)
        try:
            self._h5 = h5py.File(path, "r")
        except HDF5_FAILURES as error:
            raise _unreadable(path, error) from None
        try:
            self._structure, problems = read_structure(self._h5, path.stat().st_size,
                                                       architecture)
        except HDF5_FAILURES as error:
            self._h5.close()
            raise _unreadable(path, error) from None
        if problems:
            self._h5.close()
            raise CheckpointError(path, problems)
        self.architecture = self._structure.architecture
        self.source = self._structure.source
        self._seen: dict[str, _Seen] = {}
        self._digests: dict[str, bytes] = {}

    def paths(self) -> list[str]:
        return sorted(self._structure.datasets)

    def shape_of(self, key: str) -> tuple[int, ...]:
        return tuple(self._structure.datasets[key].shape)

    def read(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The tensors at these canonical paths, each hashed for `verify`."""
        datasets, arrays = self._structure.datasets, {}
        absent = [key for key in keys if key not in datasets]
        if absent:
            raise CheckpointError(self.where, [f"{key}: not in the checkpoint"
                                               for key in absent])
        for key in keys:
            try:
                array = read_array(datasets[key], self._structure.manifest[key]["dtype"])
            except HDF5_FAILURES as error:
                raise CheckpointError(self.where, [f"{key}: unreadable ({error})"]) from None
            self._seen[key] = _Seen(tuple(array.shape), array.dtype)
            self._digests[key] = tensor_digest(array)
            arrays[key] = array
        return arrays

    def close(self) -> None:
        self._h5.close()

    def verify(self) -> None:
        """Check the content digest: the tensors not read yet (a module never called) are read
        and hashed now, one at a time.

        Raises:
            CheckpointError: the tensors do not match the file's recorded digest.
        """
        for key in self.paths():
            if key not in self._seen:
                self.read([key])
        digest = combine_digests(self._seen, self._digests)
        if digest != self._structure.digest:
            raise CheckpointError(self.where, [
                f"content digest {digest[:12]}… does not match the recorded "
                f"{self._structure.digest[:12]}…: the file is corrupt or was edited (the "
                "blocks were compared on what it holds now)"])


def _unreadable(path: Path, error: Exception) -> CheckpointError:
    return CheckpointError(path, [f"not a readable HDF5 file ({type(error).__name__}: {error})"])


def tensor_source(checkpoint: str | Path | Checkpoint, architecture: str | None = None
                  ) -> StoredTensors | HeldTensors:
    """A file (a path) or a Checkpoint in memory, read a few tensors at a time."""
    if isinstance(checkpoint, Checkpoint):
        return HeldTensors(checkpoint)
    return StoredTensors(checkpoint, architecture)
