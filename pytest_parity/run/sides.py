"""Running one side of a pair on the case's device and dtype: the one place where inputs are
cast and placed, each framework gets its layout, and outputs come back as numpy in torch's.

Floating inputs are cast once, on the host, so that both frameworks get the same bits (integer
inputs such as token ids keep their dtype); torch runs in eval mode under `torch.no_grad`,
Flax through its jitted apply. `LoadedPair` (registered pairs) and `@parity_test` (layers)
both run their sides here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import ml_dtypes
import numpy as np

from pytest_parity.arrays import to_numpy, to_torch
from pytest_parity.calls import plain_outputs, signature_target
from pytest_parity.devices import jax_device, torch_device
from pytest_parity.inputs import InputError
from pytest_parity.layouts import Layout

_NUMPY_DTYPES = {"bfloat16": np.dtype(ml_dtypes.bfloat16)}


def numpy_dtype(dtype: str) -> np.dtype:
    """The numpy dtype of a case's dtype name ('bfloat16' through ml_dtypes)."""
    return _NUMPY_DTYPES.get(dtype) or np.dtype(dtype)


def host_input(array: Any, dtype: str) -> np.ndarray:
    """The input as both frameworks get it: floating values cast to the case's dtype."""
    array = np.asarray(array)
    floating = np.issubdtype(array.dtype, np.floating) or array.dtype == _NUMPY_DTYPES["bfloat16"]
    return array.astype(numpy_dtype(dtype), copy=False) if floating else array


def _numpy_tree(output: Any) -> Any:
    """A framework's output tree (tensors or jax arrays in dicts, lists, tuples) as numpy."""
    if isinstance(output, Mapping):
        return {key: _numpy_tree(value) for key, value in output.items()}
    if isinstance(output, list):
        return [_numpy_tree(value) for value in output]
    if isinstance(output, tuple):  # namedtuples too: the comparisons see tuples
        return tuple(_numpy_tree(value) for value in output)
    return to_numpy(output)


def torch_model_on(model: Any, device: str, dtype: str) -> Any:
    """The torch model in eval mode on the device, its floating tensors in `dtype`."""
    import torch

    return model.eval().to(torch_device(device), getattr(torch, dtype))


def flax_module_in(module: Any, dtype: str) -> Any:
    """The Flax module computing in `dtype`, where it has a `dtype` field (Flax's convention;
    an NNX module, through pytest_parity.nnx_bridge.NNXPort, sets it on every submodule)."""
    import jax.numpy as jnp

    return module.clone(dtype=jnp.dtype(dtype)) if hasattr(module, "dtype") else module


def placed_variables(variables: Any, device: str, dtype: str) -> Any:
    """Flax variables (numpy) on the device in one transfer, floating ones cast to `dtype`."""
    import jax

    cast_tree = jax.tree_util.tree_map(lambda array: host_input(array, dtype), variables)
    return jax.block_until_ready(jax.device_put(cast_tree, jax_device(device)))


def torch_input(inputs: Any, device: str, dtype: str) -> Any:
    """A torch-layout input as the torch side takes it: a tensor on the device (a dict of
    them by name for named inputs)."""
    if isinstance(inputs, Mapping):
        return {name: torch_input(value, device, dtype) for name, value in inputs.items()}
    return to_torch(host_input(inputs, dtype)).to(torch_device(device))


def flax_input(flax_inputs: Any, device: str, dtype: str) -> Any:
    """A Flax-layout input as the Flax side takes it: a jax array on the device (a dict of
    them by name for named inputs)."""
    import jax

    if isinstance(flax_inputs, Mapping):
        return {name: flax_input(value, device, dtype) for name, value in flax_inputs.items()}
    return jax.device_put(host_input(flax_inputs, dtype), jax_device(device))


def called(function: Callable[..., Any], *leading: Any, inputs: Any) -> Any:
    """`function(*leading, inputs)`, or with named inputs (a dict) as keyword arguments.

    Raises:
        InputError: named inputs the function's signature does not take (checked before the
            call, so a model's own TypeError is never mistaken for one).
    """
    if not isinstance(inputs, Mapping):
        return function(*leading, inputs)
    # A torch module's own signature is its forward's (Module.__call__ takes anything).
    target = signature_target(function)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin or a wrapper without one: call and see
        signature = None
    if signature is not None:
        try:
            signature.bind(*leading, **inputs)
        except TypeError as error:
            name = type(function).__name__ if target is not function else getattr(
                function, "__name__", type(function).__name__)
            raise InputError(f"{name}{signature} cannot take the named inputs "
                             f"{', '.join(inputs)}: {error}") from None
    return function(*leading, **inputs)


def run_torch(model: Any, inputs: Any, device: str, dtype: str) -> Any:
    """The torch model's output on a torch-layout input (or named inputs), as numpy."""
    import torch

    with torch.no_grad():
        return _numpy_tree(plain_outputs(called(model, inputs=torch_input(inputs, device, dtype))))


def run_flax(apply: Callable[..., Any], flax_inputs: Any, device: str, dtype: str, *,
             variables: Any = None, layout: Layout = Layout.SAME) -> Any:
    """A jitted Flax apply's output on a Flax-layout input (or named inputs, a dict given as
    keyword arguments), as numpy in torch's layout.

    `apply` takes `(variables, inputs)`, or only the inputs where `variables` is None (a
    function without parameters: pooling, activations).
    """
    import jax

    batch = flax_input(flax_inputs, device, dtype)
    output = plain_outputs(called(apply, inputs=batch) if variables is None else called(
        apply, variables, inputs=batch))
    if isinstance(flax_inputs, Mapping):  # named inputs: outputs keep their layout
        return jax.tree_util.tree_map(np.asarray, output)
    rank = np.ndim(flax_inputs)
    return jax.tree_util.tree_map(
        lambda leaf: layout.output_to_torch(np.asarray(leaf), rank), output)
