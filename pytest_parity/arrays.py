"""Turn torch tensors, jax arrays and numpy arrays into numpy and back, exactly (bfloat16 too);
importing this module imports no framework."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _torch_to_numpy(tensor: Any) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if str(tensor.dtype) == "torch.bfloat16":
        # numpy has no bfloat16; reinterpret the bits as ml_dtypes' bfloat16, exactly.
        import torch

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def to_numpy(value: Any) -> np.ndarray:
    """A numpy array holding exactly the values of a torch tensor, jax array or array-like."""
    if _is_torch_tensor(value):
        return _torch_to_numpy(value)
    return np.asarray(value)


def to_torch(array: np.ndarray) -> Any:
    """A torch tensor with exactly the array's values (bfloat16 included)."""
    import torch

    if str(array.dtype) == "bfloat16":
        return torch.from_numpy(np.asarray(array, order="C").view(np.int16)).view(torch.bfloat16)
    # order='C', not ascontiguousarray, which turns a scalar into shape (1,).
    return torch.from_numpy(np.asarray(array, order="C"))


def c_order_bytes(array: np.ndarray) -> memoryview:
    """An array's bytes in C order, without a copy where it already is (hashing input)."""
    return np.asarray(array, order="C").reshape(-1).view(np.uint8).data


def dtype_name(array: np.ndarray) -> str:
    """'float32', 'bfloat16', ... (ml_dtypes' types print their own names)."""
    return str(array.dtype)
