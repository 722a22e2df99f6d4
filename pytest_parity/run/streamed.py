"""Parity of a pair too large to hold: block by block within a memory bound
(`assert_streamed_close`), the Flax side optionally sharded over a mesh.

Each side holds one block's weights at a time, read from the canonical checkpoint as the block
is called: torch through its meta-parameter model and hooks (streamed_torch.py), Flax through
its own code with each block intercepted (streamed_flax.py). Each block's Flax module is judged
on the arguments torch's block received (a bfloat16/float16 case by the block's own budget:
both blocks again in float32 on the same rounded weights and inputs), then the Flax side's own
chain against torch's output end to end (in bfloat16, both chains again in float32 for that
budget). A failing block is diagnosed alone (streamed_diagnosis.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pytest_parity.compare import REFERENCE_DTYPES, Comparison, compare
from pytest_parity.diagnose import in_layout
from pytest_parity.errors import Prefixed
from pytest_parity.registry import Pair, flax_module_of
from pytest_parity.run.reference import rounded_inputs, wanted
from pytest_parity.run.sides import flax_module_in
from pytest_parity.run.streamed_blocks import Block, canonical_of, plan_blocks
from pytest_parity.run.streamed_flax import FlaxCall, FlaxStream
from pytest_parity.run.streamed_placement import Placement
from pytest_parity.run.streamed_torch import TorchCall, TorchStream, empty_model

DEFAULT_MEMORY = "1GiB"


class UnmatchedBlock(Prefixed, AssertionError):
    """A block the two sides cannot be compared on: the Flax side never called it, its call
    takes none of torch's arguments, or its outputs are of other shapes."""


@dataclass(frozen=True)
class BlockResult:
    """One block's verdict: its Flax module on torch's block inputs."""

    block: Block
    comparison: Comparison

    @property
    def passed(self) -> bool:
        return self.comparison.passed


@dataclass(frozen=True)
class StreamedResult:
    """What a streamed check compared: each block, then the output end to end."""

    name: str
    blocks: tuple[BlockResult, ...]
    output: Comparison
    memory: int  # the bound, bytes of weights per side
    diagnosis: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.output.passed and all(block.passed for block in self.blocks)

    @property
    def first_failing(self) -> BlockResult | None:
        return next((block for block in self.blocks if not block.passed), None)

    @property
    def largest_block_bytes(self) -> int:
        return max((block.block.nbytes for block in self.blocks), default=0)

    def comparison(self) -> Comparison:
        """Every leaf in one comparison: each block's ('block model.layers.3: 0'), then the
        output's."""
        renamed = [replace(leaf, path=f"block {result.block.torch or '(root)'}: "
                                      f"{leaf.path or 'output'}")
                   for result in self.blocks for leaf in result.comparison.leaves]
        return Comparison(self.name, (*renamed, *self.output.leaves))


def _layout_to_torch(flax_leaves: list[np.ndarray], torch_leaves: list[np.ndarray],
                     image_rank: int | None) -> list[np.ndarray] | None:
    """Flax's output leaves in torch's layout, as many as both sides return (torch's
    attention also returns its weights; a port, its output alone); None where one does not
    fit its torch leaf."""
    moved = [in_layout(f, t.shape, image_rank, to_flax=False)
             for f, t in zip(flax_leaves, torch_leaves, strict=False)]
    if not moved or any(m is None for m in moved):
        return None
    return [np.asarray(m) for m in moved]


def _block_comparison(block: Block, torch_call: TorchCall, flax_call: FlaxCall | None,
                      name: str, image_rank: int | None, rtol: float | None,
                      atol: float | None) -> Comparison:
    """The block's Flax outputs on torch's inputs against torch's outputs."""
    label = f"{name} block {block.torch or '(root)'}"
    given = _layout_to_torch(flax_call.given, torch_call.outputs, image_rank) \
        if flax_call is not None and flax_call.given is not None else None
    if flax_call is None or given is None:
        what = "was not called on the Flax side" if flax_call is None else \
            "could not take torch's inputs" if flax_call.given is None else \
            "returned outputs of other shapes than torch's block"
        raise UnmatchedBlock(f"streamed check {name}: the block {block.torch or '(root)'} "
                             f"(flax {block.flax or '(root)'}) {what}")
    reference = None
    if torch_call.reference is not None and flax_call.reference is not None:
        reference = (_layout_to_torch(flax_call.reference, torch_call.reference, image_rank),
                     torch_call.reference[:len(given)])
    return compare(given, torch_call.outputs[:len(given)], name=label, reference=reference,
                   rtol=rtol, atol=atol)


def run_streamed(pair: Pair, inputs: Any, source: Any, *, memory: int, dtype: str,
                 device: str, placement: Placement, tolerance: dict[str, float],
                 name: str) -> tuple[StreamedResult, tuple[TorchStream, FlaxStream]]:
    """Both sides streamed once (for a budget, once more in the reference dtype, end to
    end); the result and both streams (their block calls, for the diagnosis)."""
    budget = wanted(dtype)
    torch_out, flax_out, streams = _both_sides(pair, inputs, source, memory, dtype, dtype,
                                               device, placement, budget, judged=True)
    output_reference = None
    if budget:
        reference = REFERENCE_DTYPES[dtype]
        torch_reference, flax_reference, _ = _both_sides(
            pair, rounded_inputs(inputs, dtype), source, memory, reference, dtype, device,
            placement, False, judged=False)
        output_reference = (_in_torch_layout(pair, flax_reference, inputs), torch_reference)
    torch_stream, flax_stream = streams
    rank = image_rank(pair)
    rtol, atol = tolerance.get("rtol"), tolerance.get("atol")
    by_name = {block.torch: block for block in torch_stream.blocks}
    blocks = tuple(BlockResult(by_name[called], _block_comparison(  # in the order torch ran
        by_name[called], torch_call, flax_stream.calls.get(called), name, rank, rtol, atol))
        for called, torch_call in torch_stream.calls.items())
    output = compare(_in_torch_layout(pair, flax_out, inputs), torch_out, name=name,
                     reference=output_reference, padding=pair.padding(inputs), rtol=rtol,
                     atol=atol)
    return StreamedResult(name, blocks, output, memory), streams


def image_rank(pair: Pair) -> int | None:
    """The rank of an image pair's input (its channels move between layouts); None for named
    inputs."""
    return None if pair.named_inputs else len(pair.input_shape)


def _in_torch_layout(pair: Pair, flax_out: dict[str, np.ndarray], inputs: Any
                     ) -> dict[str, np.ndarray]:
    if pair.named_inputs:
        return flax_out
    rank = np.ndim(inputs)
    return {path: pair.input_layout.output_to_torch(leaf, rank)
            for path, leaf in flax_out.items()}


def _both_sides(pair: Pair, inputs: Any, source: Any, memory: int, dtype: str, rounded: str,
                device: str, placement: Placement, budget: bool, *, judged: bool
                ) -> tuple[Any, Any, tuple[TorchStream, FlaxStream]]:
    """Each side's output (numpy, by leaf path) computing in `dtype` on weights rounded to
    `rounded`, and both streams; `judged`: each Flax block also run on torch's arguments,
    `budget`: and in the reference dtype."""
    model = empty_model(pair.torch_model, dtype, rounded)
    blocks, loose = plan_blocks(model, pair.mapping, memory)
    torch_stream = TorchStream(model, pair.mapping, blocks, source, dtype, rounded, budget)
    if loose:
        torch_stream.load_loose(loose)
    torch_out = torch_stream.run(inputs, device, dict(pair.torch_call))
    module = flax_module_of(pair)
    flax_stream = FlaxStream(
        flax_module_in(module, dtype),
        flax_module_in(module, REFERENCE_DTYPES[dtype]) if budget else None,
        pair.mapping, blocks, source, dtype, rounded, placement.variable, placement.input,
        image_rank(pair), judged)
    with placement.inside():
        flax_out = flax_stream.run(pair.to_flax(inputs), torch_stream.calls,
                                   canonical_of(pair.mapping, loose), dict(pair.flax_call))
    return torch_out, flax_out, (torch_stream, flax_stream)
