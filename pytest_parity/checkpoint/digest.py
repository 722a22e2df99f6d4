"""The content digest of a checkpoint: sha256 over every tensor's name, shape, dtype and bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np

from pytest_parity.arrays import c_order_bytes
from pytest_parity.threads import thread_map


def tensor_digest(array: np.ndarray) -> bytes:
    """sha256 of one tensor's bytes in C order (hashlib releases the GIL: runs in threads)."""
    return hashlib.sha256(c_order_bytes(array)).digest()


def combine_digests(arrays: Mapping[str, np.ndarray], tensor_digests: Mapping[str, bytes]
                    ) -> str:
    """sha256 over each tensor's name, shape, dtype and the sha256 of its bytes, by name."""
    sha = hashlib.sha256()
    for name in sorted(arrays):
        array = arrays[name]
        sha.update(f"{name}\0{tuple(array.shape)}\0{array.dtype}\0".encode())
        sha.update(tensor_digests[name])
    return sha.hexdigest()


def content_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """The checkpoint's digest; tensors are hashed in parallel, then combined in name order."""
    names = sorted(arrays)
    return combine_digests(arrays, dict(zip(names, thread_map(
        lambda name: tensor_digest(arrays[name]), names), strict=True)))
