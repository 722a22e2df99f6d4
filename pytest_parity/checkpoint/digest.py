"""The content digest of a checkpoint: sha256 over every tensor's name, shape, dtype and bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

import numpy as np

from pytest_parity.arrays import c_order_bytes
from pytest_parity.threads import thread_map


def tensor_digest(array: np.ndarray) -> bytes:
    """sha256 of one tensor's bytes in C order (hashlib releases the GIL: runs in threads)."""
    return hashlib.sha256(c_order_bytes(array)).digest()


class Shaped(Protocol):
    """What the digest reads of a tensor besides its bytes: an array, or a TensorSummary."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> Any: ...


class TensorSummary(NamedTuple):
    """A tensor's shape and dtype, kept in place of the tensor by a writer that streams."""

    shape: tuple[int, ...]
    dtype: np.dtype


def combine_digests(tensors: Mapping[str, Shaped], tensor_digests: Mapping[str, bytes]
                    ) -> str:
    """sha256 over each tensor's name, shape, dtype and the sha256 of its bytes, by name;
    `tensors` the arrays themselves or only their shapes and dtypes (TensorSummary)."""
    sha = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name]
        sha.update(f"{name}\0{tuple(tensor.shape)}\0{tensor.dtype}\0".encode())
        sha.update(tensor_digests[name])
    return sha.hexdigest()


def content_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """The checkpoint's digest; tensors are hashed in parallel, then combined in name order."""
    names = sorted(arrays)
    return combine_digests(arrays, dict(zip(names, thread_map(
        lambda name: tensor_digest(arrays[name]), names), strict=True)))
