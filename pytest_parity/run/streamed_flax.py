"""The Flax side of a streamed check: the model's own code run on its own outputs, each block
given only its own variables, read from the checkpoint as it is called, and let go after.

The root is called eagerly with every variable outside the blocks bound and the blocks' left
abstract (an NNX port's `partly_bound`; a Linen root's apply holds the loose variables only);
each call of a block is intercepted (pytest_parity.mapping.intercepted_calls for NNX,
flax.linen.intercept_methods for Linen) and the block run jitted on its own variables, twice:
on the chain's own arguments (its output goes on down the chain: the end-to-end output is the
Flax side's own) and on the arguments torch's block received, paired by parameter name
(pytest_parity.diagnose.torch_inputs_in_flax_call: a mask each side builds its own way stays
Flax's). Blocks of one structure (a decoder's layers) share one compiled program.

Given a mesh and a partition spec per variable (`shardings(path, shape)`), each block's
variables are placed sharded, its inputs replicated, and it runs inside the mesh; its outputs
are gathered, one block at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from pytest_parity.calls import plain_outputs
from pytest_parity.compare import REFERENCE_DTYPES, leaves
from pytest_parity.diagnose import argument_names, torch_inputs_in_flax_call
from pytest_parity.errors import ParityError
from pytest_parity.mapping import Mapping, MappingError, flatten, intercepted_calls, submodules
from pytest_parity.nnx_bridge import NNXPort, is_nnx_module
from pytest_parity.run.sides import host_input
from pytest_parity.run.streamed_blocks import Block, return_freed_memory
from pytest_parity.run.streamed_torch import TorchCall


@dataclass
class FlaxCall:
    """A block's call on the chain, and what it gave on torch's arguments."""

    inputs: list[np.ndarray]
    names: list[str | None]
    given: list[np.ndarray] | None = None  # outputs on torch's arguments (None: none fit)
    reference: list[np.ndarray] | None = None  # the same in the reference dtype
    runner: Any = None  # the block's module alone (a BlockRunner), for the diagnosis
    template: Any = None  # its call's other arguments


def _array_leaves(output: Any) -> list[Any]:
    return [leaf for leaf in leaves(plain_outputs(output)).values() if is_array(leaf)]


def is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


_SLOT = object()  # where a call's array goes in its template


def _template(args: Any, kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call with each array replaced by a slot (the arrays go in separately, in order)."""
    return (tuple(_SLOT if is_array(a) else a for a in args),
            {k: _SLOT if is_array(v) else v for k, v in kwargs.items()})


def filled(args: Any, kwargs: Any, arrays: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    given = iter(arrays)
    return ([next(given) if a is _SLOT else a for a in args],
            {k: next(given) if v is _SLOT else v for k, v in kwargs.items()})


@dataclass
class FlaxStream:
    """The Flax module (Linen, or NNX behind NNXPort) in the case's dtype, run once through
    its blocks; `calls` by block name afterwards."""

    module: Any
    reference_module: Any  # in the reference dtype (None: no budget)
    mapping: Mapping
    blocks: list[Block]
    source: Any  # a TensorSource
    dtype: str
    rounded: str  # the dtype weights are rounded to first (the case's; `dtype` wider in a
    # reference run)
    placement: Callable[[str, np.ndarray], Any]  # (variable path, array) -> placed array
    replicated: Callable[[np.ndarray], Any]  # an input, placed
    image_rank: int | None = None
    judged: bool = True  # each block also on torch's arguments (not in a reference run)
    calls: dict[str, FlaxCall] = field(default_factory=dict)
    _programs: dict[Any, Any] = field(default_factory=dict)
    _inside_block: bool = False  # a block running alone: its own module calls pass through
    _loose: tuple[str, ...] = ()  # canonical paths kept outside the blocks (tied ones too)

    def canonical_of(self, block: Block) -> tuple[str, ...]:
        """The canonical tensors a block runs on: its own, and the kept ones under its path
        (a whole model as one block needs its tied embeddings)."""
        prefix = f"{block.flax}/" if block.flax else ""
        return (*block.canonical, *(path for path in self._loose if path.startswith(prefix)
                                    and path not in block.canonical))

    def variables_of(self, canonical: tuple[str, ...], within: str) -> dict[str, Any]:
        """The Flax variables of these canonical tensors, read now, relative to the module at
        `within`, placed, in the case's dtype."""
        return self.placed(self.read(canonical), within)

    def read(self, canonical: tuple[str, ...]) -> dict[str, np.ndarray]:
        """These canonical tensors from the checkpoint as Flax variables (flat, numpy)."""
        return_freed_memory()  # the previous block's, before this one's are read
        try:
            return flatten(self.mapping.canonical_to_flax(self.source.read(canonical)))
        except MappingError as error:
            raise ParityError(f"streamed check: {error.message}") from None

    def placed(self, flat: dict[str, np.ndarray], within: str, dtype: str | None = None
               ) -> dict[str, Any]:
        """Flax variables read by `read`, relative to the module at `within`, placed, in the
        case's dtype (`dtype`: another, from the same rounded values)."""
        prefix = f"{within}/" if within else ""
        placed: dict[str, Any] = {}
        for name, array in flat.items():
            collection, _, path = name.partition("/")
            cast = host_input(host_input(array, self.rounded), dtype or self.dtype)
            node = placed.setdefault(collection, {})
            *parents, leaf = path.removeprefix(prefix).split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = self.placement(path, cast)
        return placed

    def run(self, flax_inputs: Any, torch_calls: dict[str, TorchCall],
            loose: tuple[str, ...], call: dict[str, Any]) -> Any:
        """The Flax model's own output on its inputs (numpy tree), every block run as it is
        called, also on the arguments torch's block received."""
        by_path = {block.flax: block for block in self.blocks}
        self._loose = loose
        kept = self.variables_of(loose, "") if loose else {}

        def on_call(path: str, module: Any, own: Callable[..., Any], args: Any,
                    kwargs: Any) -> Any:
            block = by_path.get(path)
            if block is None or self._inside_block:
                return own(*args, **kwargs)
            return self._block(block, module, own, args, kwargs, torch_calls.get(block.torch))

        inputs = ({k: self.replicated(v) for k, v in flax_inputs.items()}
                  if isinstance(flax_inputs, dict) else self.replicated(flax_inputs))
        with _blocks_intercepted(self.module, kept, set(by_path), on_call,
                                 lambda: self._inside_block) as root:
            output = root(**inputs, **call) if isinstance(inputs, dict) else root(inputs, **call)
        return {path: np.asarray(leaf) for path, leaf in leaves(plain_outputs(output)).items()
                if hasattr(leaf, "shape")}

    def _program(self, runner: BlockRunner, template: Any) -> Callable[..., Any]:
        """The block's call jitted: one program per block structure and call (a decoder's
        layers share one)."""
        import jax

        key = (runner.key, repr(template))
        if key not in self._programs:
            def run(variables: Any, arrays: list[Any]) -> Any:
                args, kwargs = filled(template[0], template[1], arrays)
                return runner.apply(variables, *args, **kwargs)
            self._programs[key] = jax.jit(run)
        return self._programs[key]

    def _block(self, block: Block, module: Any, own_call: Callable[..., Any], args: Any,
               kwargs: Any, torch_call: TorchCall | None) -> Any:
        """The block run alone on its variables, read now: its output on the chain's
        arguments, which goes on down the chain; at its first call also on torch's (a block
        called again is run again, judged once, as torch's side keeps its first call)."""
        template = _template(args, kwargs)
        arrays = [a for a in (*args, *kwargs.values()) if is_array(a)]
        runner = BlockRunner.of(module)
        read = self.read(self.canonical_of(block))
        variables = self.placed(read, block.flax)
        if self.reference_module is None:
            read = {}  # let go: only a budget's reference places them again
        program = self._program(runner, template)
        self._inside_block = True
        try:
            output = program(variables, arrays)
            if block.torch in self.calls or not self.judged:
                return output
            record = FlaxCall([np.asarray(a) for a in arrays],
                              argument_names(own_call, args, kwargs), runner=runner,
                              template=template)
            self.calls[block.torch] = record
            given = torch_inputs_in_flax_call(record, torch_call, self.image_rank) \
                if torch_call is not None else None
            if given is not None:
                record.given = [np.asarray(leaf) for leaf in _array_leaves(
                    program(variables, [self.replicated(a) for a in given]))]
                if self.reference_module is not None:
                    record.reference = self._reference(block, runner, template, given, read)
            return output
        finally:
            self._inside_block = False

    def _reference(self, block: Block, runner: BlockRunner, template: Any,
                   given: list[np.ndarray], read: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The block in the reference dtype on the case's rounded variables (those `read`
        for its run in the case's dtype) and inputs."""
        reference = REFERENCE_DTYPES[self.rounded]
        wide = runner.in_dtype(self.reference_module, block.flax, reference)
        variables = self.placed(read, block.flax, reference)
        widened = [self.replicated(host_input(host_input(a, self.rounded), reference))
                   for a in given]
        return [np.asarray(leaf) for leaf in
                _array_leaves(self._program(wide, template)(variables, widened))]


@dataclass(frozen=True)
class BlockRunner:
    """A block's module as a function of its variables: an NNX submodule through a port of
    its own; a Linen submodule unbound, applied alone."""

    key: Any  # equal for blocks of one structure
    apply: Callable[..., Any]
    module: Any  # an NNXPort, or the unbound Linen module

    @property
    def signature(self) -> Callable[..., Any]:
        """The function whose signature names the block's arguments."""
        module = self.module.module if isinstance(self.module, NNXPort) else self.module
        return module.__call__

    @staticmethod
    def of(module: Any) -> BlockRunner:
        if isinstance(module, NNXPort) or is_nnx_module(module):
            port = module if isinstance(module, NNXPort) else NNXPort(module)
            return BlockRunner(port.graphdef, port.apply, port)
        unbound = module.clone(parent=None) if module.scope is not None else module
        return BlockRunner(repr(unbound.clone(name=None)), unbound.apply, unbound)

    def in_dtype(self, reference_root: Any, path: str, dtype: str) -> BlockRunner:
        """The same block computing in `dtype`."""
        import jax.numpy as jnp

        if isinstance(self.module, NNXPort):
            return BlockRunner.of(submodules(reference_root.module)[path])
        if hasattr(self.module, "dtype"):
            return BlockRunner.of(self.module.clone(dtype=jnp.dtype(dtype)))
        return self


@contextlib.contextmanager
def _blocks_intercepted(module: Any, kept: dict[str, Any], blocks: set[str],
                        on_call: Callable[..., Any], inside_block: Callable[[], bool]
                        ) -> Iterator[Callable[..., Any]]:
    """The root as a callable holding the `kept` variables, every module call inside it
    handed to `on_call(path, module, own_call, args, kwargs)` but while a block runs alone
    (`inside_block()`). A Linen block's `setup`, which would look for its variables, is
    skipped: the block runs alone, on its own."""
    if isinstance(module, NNXPort):
        root = module.partly_bound(kept)
        with intercepted_calls(root, lambda path, sub, call, args, kwargs:
                               on_call(path, sub, call, args, kwargs)):
            yield root
        return
    import flax.linen as nn

    def intercept(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        path = "/".join(context.module.path)
        if inside_block():  # a block alone: its paths are its own, not the root's
            return next_fun(*args, **kwargs)
        if context.method_name == "setup" and path in blocks:
            return None
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        return on_call(path, context.module, next_fun, args, kwargs)

    with nn.intercept_methods(intercept):
        yield partial(module.apply, kept)

