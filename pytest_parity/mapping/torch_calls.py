"""The order in which a torch model calls its modules, recorded with forward pre-hooks.

Registration order is not call order: a model may register its final norm before its blocks
and call it after them. A hook on every module records each module's first call while the
model runs once (in eval mode, under torch.no_grad, its modules' training flags restored
after; a model on the meta device runs on meta inputs). Without torch inputs, they are made
from the Flax inputs: named arrays under the same names, positional ones in order, one
positional image (rank 4) moved from NHWC to NCHW; integer dtypes are kept, floating inputs
take the model's floating dtype; shapes alone (jax.ShapeDtypeStruct) become zeros.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def _model_device_and_dtype(model: Any) -> tuple[Any, Any]:
    import torch

    tensors = [*model.parameters(), *model.buffers()]
    floating = [t.dtype for t in tensors if t.is_floating_point()]
    return (tensors[0].device if tensors else torch.device("cpu"),
            floating[0] if floating else torch.float32)


def _torch_dtype(dtype: Any) -> Any:
    import torch

    name = np.dtype(dtype).name
    return torch.bfloat16 if name == "bfloat16" else torch.from_numpy(np.empty(0, name)).dtype


def _tensor(value: Any, device: Any, floating: Any) -> Any:
    """One input as a torch tensor on the model's device (zeros where only its shape is
    known, or on the meta device)."""
    import torch

    if not isinstance(value, torch.Tensor):
        dtype = _torch_dtype(value.dtype)
        dtype = floating if dtype.is_floating_point else dtype
        if device.type == "meta" or not _concrete(value):
            return torch.zeros(tuple(value.shape), dtype=dtype, device=device)
        value = torch.from_numpy(np.array(value)).to(dtype)
    if value.is_floating_point():
        value = value.to(floating)
    return value.to(device)


def _concrete(value: Any) -> bool:
    import jax

    return not isinstance(value, jax.ShapeDtypeStruct)


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def torch_call_inputs(flax_inputs: tuple[Any, ...], flax_kwargs: Mapping[str, Any],
                      torch_inputs: Any, torch_kwargs: Mapping[str, Any] | None
                      ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """The torch forward's positional and keyword inputs (still numpy, jax or torch), from
    `torch_inputs` (an array, a tuple of them, or a dict of named ones) or else from the Flax
    inputs; None when there is nothing to call it with."""
    extra = dict(torch_kwargs or {})
    if torch_inputs is not None:
        if isinstance(torch_inputs, Mapping):
            return (), {**torch_inputs, **extra}
        given = torch_inputs if isinstance(torch_inputs, tuple) else (torch_inputs,)
        return given, extra
    named = {name: value for name, value in flax_kwargs.items() if _is_array(value)}
    if not all(_is_array(value) for value in flax_inputs) or not (flax_inputs or named):
        return None
    if len(flax_inputs) == 1 and not named and len(flax_inputs[0].shape) == 4:
        return (_channels_first(flax_inputs[0]),), extra
    return tuple(flax_inputs), {**named, **extra}


def _channels_first(image: Any) -> Any:
    import jax

    if isinstance(image, jax.ShapeDtypeStruct):
        n, h, w, c = image.shape
        return jax.ShapeDtypeStruct((n, c, h, w), image.dtype)
    return np.transpose(np.asarray(image), (0, 3, 1, 2))


def call_order(model: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]
               ) -> tuple[list[str] | None, str]:
    """The names of the modules the model calls, in the order of their first call, and ''; or
    None and why the forward failed ('' where the model has no forward of its own to run)."""
    import torch

    if type(model).forward is torch.nn.Module.forward:
        return None, ""
    device, floating = _model_device_and_dtype(model)

    def converted(value: Any) -> Any:
        return _tensor(value, device, floating) if _is_array(value) else value

    names = {id(module): name for name, module in model.named_modules()}
    order: dict[str, None] = {}
    hooks = [module.register_forward_pre_hook(
        lambda module, _inputs: order.setdefault(names[id(module)])) for module in
        model.modules()]
    training = {name: module.training for name, module in model.named_modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(*(converted(a) for a in args), **{k: converted(v) for k, v in kwargs.items()})
    except Exception as error:  # any failure of the user's forward: reported, not hidden
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return None, f"{type(error).__name__}: {reason[:200]}"
    finally:
        for hook in hooks:
            hook.remove()
        for name, module in model.named_modules():
            module.training = training[name]
    return list(order), ""
