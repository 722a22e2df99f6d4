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


# torch dtypes whose values a numpy array holds exactly (bfloat16 through ml_dtypes).
NUMPY_HOLDS = frozenset({"bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32",
                         "uint64", "float16", "bfloat16", "float32", "float64", "complex64",
                         "complex128"})


def torch_tensor_problem(tensor: Any) -> str:
    """Why a torch tensor cannot become a numpy array, with the fix ('' when it can, or when
    it is no torch tensor): its kind (sparse, quantized, meta, nested) or dtype (float8...)."""
    if not _is_torch_tensor(tensor):
        return ""
    layout = str(tensor.layout).removeprefix("torch.")
    dtype = str(tensor.dtype).removeprefix("torch.")
    if getattr(tensor, "is_nested", False):
        return "a nested tensor, which numpy cannot hold; save one tensor per key"
    if layout != "strided":
        kind = "a sparse tensor" if layout.startswith("sparse") else "a tensor"
        return (f"{kind} (layout {layout}), which numpy cannot hold; save tensor.to_dense() "
                "instead")
    if tensor.is_quantized:
        return (f"a quantized tensor ({dtype}), which numpy cannot hold; save "
                "tensor.dequantize() instead")
    if tensor.is_meta:
        return ("a meta tensor: it has a shape but no values (saved from a model built on the "
                "meta device); save the weights of a model built on the CPU")
    if dtype not in NUMPY_HOLDS:
        return f"dtype {dtype}, which numpy cannot hold; save tensor.float() instead"
    return ""


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
