"""The diagnosis of a streamed check's failing block: the block alone, its weights loaded once
more on both sides, audited and traced as a whole model is (pytest_parity.diagnose) on the
arguments torch's block received, under the pair's mapping seen from inside the block.

Its culprits are named from the block ('self_attn.o_proj' inside 'model.layers.3'); the lines
say which block they are inside.
"""

from __future__ import annotations

import inspect
from typing import Any

from pytest_parity.calls import flax_called_with
from pytest_parity.diagnose import Diagnosis, diagnose, torch_inputs_in_flax_call
from pytest_parity.errors import PREFIX
from pytest_parity.run.streamed_blocks import Block, block_mapping
from pytest_parity.run.streamed_flax import FlaxStream, filled, is_array
from pytest_parity.run.streamed_torch import TorchStream, empty


def as_keywords(function: Any, args: Any, kwargs: Any) -> dict[str, Any]:
    """A call's arguments, each by its parameter's name (a `**kwargs` parameter's spread)."""
    signature = inspect.signature(function)
    bound = signature.bind(*args, **kwargs).arguments
    keywords: dict[str, Any] = {}
    for name, value in bound.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            keywords.update(value)
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            keywords[name] = value
    return keywords


def diagnose_block(block: Block, torch_stream: TorchStream, flax_stream: FlaxStream,
                   mapping: Any, tolerance: dict[str, float], image_rank: int | None
                   ) -> Diagnosis | None:
    """The audits and the trace of the block on torch's arguments; None where its Flax call
    took none of them."""
    torch_call = torch_stream.calls[block.torch]
    flax_call = flax_stream.calls.get(block.torch)
    if flax_call is None:
        return None
    given = torch_inputs_in_flax_call(flax_call, torch_call, image_rank)
    if given is None:
        return None
    module = torch_stream.model.get_submodule(block.torch) if block.torch else torch_stream.model
    module.load_state_dict(torch_stream.state_of(block), assign=True, strict=False)
    try:
        runner = flax_call.runner
        args, kwargs = filled(flax_call.template[0], flax_call.template[1],
                              [flax_stream.replicated(a) for a in given])
        flax_keywords = as_keywords(runner.signature, args, kwargs)
        arrays = {k: v for k, v in flax_keywords.items() if is_array(v)}
        others = {k: v for k, v in flax_keywords.items() if not is_array(v) and v is not None}
        return diagnose(
            mapping=block_mapping(mapping, block), torch_model=module,
            flax_module=flax_called_with(runner.module, others),
            flax_variables=flax_stream.variables_of(flax_stream.canonical_of(block),
                                                  block.flax),
            torch_inputs=as_keywords(module.forward, torch_call.args, torch_call.kwargs),
            flax_inputs=arrays, image_rank=image_rank, tolerance=tolerance)
    finally:
        empty(module, block)


def block_lines(block: Block, diagnosis: Diagnosis | None) -> list[str]:
    """The failure text's diagnosis section, headed by the block it is inside."""
    head = f"{PREFIX} the first failing block: torch {block.torch or '(root)'} <-> flax " \
           f"{block.flax or '(root)'}; inside it:"
    if diagnosis is None:
        return [head, "  no diagnosis: the block's Flax call takes none of torch's arguments"]
    return [head, *(f"  {line}" for line in diagnosis.lines())]
