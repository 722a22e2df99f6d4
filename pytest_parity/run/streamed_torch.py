"""The torch side of a streamed check: the model built with its parameters on the meta device,
each block given its weights from the checkpoint just before it runs and made empty again
after (forward pre- and post-hooks, `load_state_dict(assign=True)`), each block's call kept.

Buffers stay real when the model is built (as accelerate's `init_empty_weights` leaves them by
default): those the model does not save (Llama's rotary frequencies) are computed by its own
code and never in a checkpoint. A block's call is kept as numpy (the arguments, their
parameter names, the output leaves) and, where the case is judged by its budget, the block run
once more in the reference dtype on its rounded weights and inputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_parity.arrays import to_numpy
from pytest_parity.calls import plain_outputs
from pytest_parity.compare import REFERENCE_DTYPES, leaves
from pytest_parity.diagnose import argument_names
from pytest_parity.errors import CheckpointError, ParityError
from pytest_parity.mapping import Mapping
from pytest_parity.run.sides import torch_input
from pytest_parity.run.streamed_blocks import (
    Block,
    canonical_of,
    return_freed_memory,
    tied_groups,
)


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """While inside, every parameter a module registers goes to the meta device (no memory);
    buffers stay where they were made."""
    import torch

    register = torch.nn.Module.register_parameter

    def on_meta(module: Any, name: str, parameter: Any) -> None:
        if parameter is not None and parameter.device.type != "meta":
            parameter = torch.nn.Parameter(parameter.to("meta"),
                                           requires_grad=parameter.requires_grad)
        register(module, name, parameter)

    torch.nn.Module.register_parameter = on_meta  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register  # type: ignore[method-assign]


def empty_model(factory: Callable[[], Any], dtype: str, rounded: str | None = None) -> Any:
    """The torch model of `factory`, its parameters on the meta device, in `dtype` (its
    buffers rounded to `rounded` first, as the case's model holds them), eval."""
    import torch

    with parameters_on_meta():
        model = factory()
    return model.to(getattr(torch, rounded or dtype)).to(getattr(torch, dtype)).eval()


@dataclass
class TorchCall:
    """One block's call: its arrays (numpy) with their parameter names, its other arguments
    as they were (for running the block again), and its output leaves."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    inputs: list[np.ndarray]
    names: list[str | None]
    outputs: list[np.ndarray]
    reference: list[np.ndarray] | None = None  # in the reference dtype, where wanted


def _arrays(args: Any, kwargs: Any) -> list[Any]:
    import torch

    return [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]


def _output_leaves(output: Any) -> list[np.ndarray]:
    import torch

    return [np.array(to_numpy(leaf)) for leaf in leaves(plain_outputs(output)).values()
            if isinstance(leaf, torch.Tensor)]


def _widened(value: Any, dtype: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(dtype)
    if isinstance(value, tuple):
        return tuple(_widened(v, dtype) for v in value)
    return value


@dataclass
class TorchStream:
    """The torch model run once on the case's inputs, one block's weights in memory at a
    time; `calls` by block name afterwards."""

    model: Any
    mapping: Mapping
    blocks: list[Block]
    source: Any  # a TensorSource
    dtype: str
    rounded: str  # the dtype weights are rounded to first (the case's; `dtype` wider in a
    # reference run)
    reference: bool  # run each block again in the reference dtype
    calls: dict[str, TorchCall] = field(default_factory=dict)
    _quiet: bool = False  # the reference run: the hooks stand aside

    def state_of(self, block: Block) -> dict[str, Any]:
        """The block's tensors from the checkpoint as torch tensors under its own keys,
        rounded to the case's dtype and held in the stream's."""
        import torch

        return_freed_memory()  # the previous block's, before this one's are read
        arrays = self.source.read(block.canonical)
        state = self.mapping.canonical_to_torch(arrays)
        module = self.model.get_submodule(block.torch) if block.torch else self.model
        expected = module.state_dict(keep_vars=True)
        prefix = f"{block.torch}." if block.torch else ""
        problems = [f"{key}: shape {tuple(state[key].shape)} where the torch model has "
                    f"{tuple(expected[key.removeprefix(prefix)].shape)}"
                    for key in state if key.removeprefix(prefix) in expected
                    and tuple(state[key].shape) != tuple(expected[key.removeprefix(prefix)].shape)]
        if problems:
            raise CheckpointError(self.source.where, problems)
        rounded, target = getattr(torch, self.rounded), getattr(torch, self.dtype)
        loaded = {}
        for full_key in block.torch_keys:
            key, value = full_key.removeprefix(prefix), state.get(full_key)
            array = torch.from_numpy(np.asarray(value)) if value is not None else \
                torch.zeros(expected[key].shape, dtype=expected[key].dtype)  # torch's own buffer
            loaded[key] = array.to(rounded).to(target) if array.is_floating_point() else array
        return loaded

    def load_loose(self, keys: tuple[str, ...]) -> None:
        """The weights split modules hold themselves and the tied ones, loaded once and kept;
        each tied parameter's other names given the loaded one (a name the mapping leaves
        out, GPT-2's lm_head.weight, comes from its tie)."""
        correspondence = self.mapping.correspondence(keys)
        mapped = tuple(key for key in keys if key in correspondence)
        loose = Block("", "", mapped, canonical_of(self.mapping, mapped), 0)
        self.model.load_state_dict(self.state_of(loose), strict=False, assign=True)
        for group in tied_groups(self.model):
            loaded = [name for name in group if name in mapped]
            if loaded:
                parameter = self.model.get_parameter(loaded[0])
                for name in group:
                    owner, _, leaf = name.rpartition(".")
                    (self.model.get_submodule(owner) if owner else self.model
                     )._parameters[leaf] = parameter

    def run(self, inputs: Any, device: str, call: dict[str, Any]) -> Any:
        """The model's output (numpy tree) on torch-layout inputs, every block's call kept."""
        import torch

        hooks = []
        for block in self.blocks:
            module = self.model.get_submodule(block.torch) if block.torch else self.model
            hooks.append(module.register_forward_pre_hook(self._loader(block)))
            hooks.append(module.register_forward_hook(self._keeper(block), with_kwargs=True))
        placed = torch_input(inputs, device, self.dtype)
        try:
            with torch.no_grad():
                output = self.model(**placed, **call) if isinstance(placed, dict) else \
                    self.model(placed, **call)
        except (RuntimeError, NotImplementedError) as error:
            if "meta" not in str(error):
                raise
            raise ParityError(
                "streamed check: the torch model used weights no block had loaded (a module "
                "that reads a child's weights without calling it, as nn.MultiheadAttention "
                "reads out_proj.weight, split into blocks): a larger memory bound keeps it "
                f"whole; torch said: {str(error).splitlines()[0]}") from None
        finally:
            for hook in hooks:
                hook.remove()
        return {path: np.array(to_numpy(leaf)) for path, leaf in
                leaves(plain_outputs(output)).items() if isinstance(leaf, torch.Tensor)}

    def _loader(self, block: Block) -> Callable[..., None]:
        def load(module: Any, args: Any) -> None:
            if not self._quiet:
                module.load_state_dict(self.state_of(block), assign=True, strict=False)
        return load

    def _keeper(self, block: Block) -> Callable[..., None]:
        def keep(module: Any, args: Any, kwargs: Any, output: Any) -> None:
            if self._quiet:
                return
            if block.torch not in self.calls:
                self.calls[block.torch] = TorchCall(
                    args, kwargs, [np.array(to_numpy(a)) for a in _arrays(args, kwargs)],
                    argument_names(module.forward, args, kwargs), _output_leaves(output),
                    self._reference(module, block, args, kwargs) if self.reference else None)
            empty(module, block)
        return keep

    def _reference(self, module: Any, block: Block, args: Any, kwargs: Any
                   ) -> list[np.ndarray]:
        """The block in the reference dtype on the case's rounded weights and inputs."""
        import torch

        wide = getattr(torch, REFERENCE_DTYPES[self.rounded])
        state = {key: _widened(value, wide) for key, value in
                 module.state_dict(keep_vars=True).items()}
        state.update({name: _widened(buffer, wide) for name, buffer in module.named_buffers()})
        self._quiet = True
        try:
            output = torch.func.functional_call(
                module, state, tuple(_widened(a, wide) for a in args),
                {k: _widened(v, wide) for k, v in kwargs.items()})
        finally:
            self._quiet = False
        return _output_leaves(output)


def empty(module: Any, block: Block) -> None:
    """The block's own parameters and saved buffers back on the meta device: memory let go
    (a tied parameter it shares with the rest of the model stays)."""
    import torch

    prefix = f"{block.torch}." if block.torch else ""
    for key in block.torch_keys:
        owner, _, leaf = key.removeprefix(prefix).rpartition(".")
        holder = module.get_submodule(owner) if owner else module
        if leaf in holder._parameters:
            held = holder._parameters[leaf]
            holder._parameters[leaf] = torch.nn.Parameter(
                torch.empty(held.shape, dtype=held.dtype, device="meta"),
                requires_grad=held.requires_grad)
        elif leaf in holder._buffers:
            held = holder._buffers[leaf]
            holder._buffers[leaf] = torch.empty(held.shape, dtype=held.dtype, device="meta")
