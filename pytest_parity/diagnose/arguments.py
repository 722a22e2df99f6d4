"""Which arrays of a torch call and a Flax call are the same argument.

Torch is often called with keywords (`model(input_ids=..., attention_mask=...)`) and the Flax
module positionally, or a block's arguments come in another order. Each captured array keeps
its parameter name in its module's signature, and the two calls' arrays are paired by name
where both signatures have the name, the others on each side in order. Before, transformers'
GPT-2 and RoBERTa roots were compared token ids against attention mask (inputs max abs 969).
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol

import numpy as np

from pytest_parity.diagnose.distance import in_layout


class Call(Protocol):
    """A captured call (capture.Call): its arrays and their parameter names."""

    inputs: list[np.ndarray]
    names: list[str | None]


def is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def argument_names(function: Any, args: Any, kwargs: Any) -> list[str | None]:
    """The parameter name of each array among `args` then `kwargs` in a call of `function`:
    torch's `model(input_ids=..., attention_mask=...)` and a Flax module given the same
    positionally name their arrays alike."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    positional = [p.name for p in parameters
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = [positional[i] if i < len(positional) else None
             for i, a in enumerate(args) if is_array(a)]
    return names + [name for name, value in kwargs.items() if is_array(value)]


def paired_inputs(flax_call: Call, torch_call: Call) -> list[tuple[int, int]]:
    """(Flax index, torch index) of the arguments both calls have: those whose parameter names
    both signatures have, by name; the others, on each side in order, by position."""
    shared = {name for name in flax_call.names if name} & \
        {name for name in torch_call.names if name}
    torch_index = {name: index for index, name in enumerate(torch_call.names) if name}
    named = [(index, torch_index[name]) for index, name in enumerate(flax_call.names)
             if name in shared]
    # The rest of each side in order: torch's `forward(x, mask)` and Flax's
    # `__call__(inputs, mask)` share only `mask`; `x` and `inputs` are one argument still.
    flax_rest = [index for index in range(len(flax_call.inputs))
                 if index >= len(flax_call.names) or flax_call.names[index] not in shared]
    torch_rest = [index for index in range(len(torch_call.inputs))
                  if index >= len(torch_call.names) or torch_call.names[index] not in shared]
    return sorted([*named, *zip(flax_rest, torch_rest, strict=False)])


def torch_inputs_in_flax_call(flax_call: Call, torch_call: Call,
                              image_rank: int | None) -> list[np.ndarray] | None:
    """The Flax call's arrays with each that torch's call also has replaced by torch's (in
    Flax's layout and dtype); the rest (a mask each side builds its own way) as Flax had
    them. None where no torch array fits."""
    given, replaced = list(flax_call.inputs), 0
    for flax_index, torch_index in paired_inputs(flax_call, torch_call):
        own = flax_call.inputs[flax_index]
        moved = in_layout(torch_call.inputs[torch_index], own.shape, image_rank, to_flax=True)
        if moved is not None:
            given[flax_index], replaced = np.ascontiguousarray(moved).astype(own.dtype), \
                replaced + 1
    return given if replaced else None
