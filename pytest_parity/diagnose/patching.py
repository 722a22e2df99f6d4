"""Where the error starts, found by giving the Flax side torch's activations.

Judging each module on identical inputs (trace.py) finds a module that is wrong by a clear
factor of its tolerance. Some bugs are not: a GELU approximation switched inside a GPT-2 MLP
changes that block's output by 1.6e-6 against an atol of 1e-5 (its values are small), and the
final LayerNorm scales the difference up past the tolerance. Judged on its own, no block fails,
and the LayerNorm, fed inputs within tolerance, looked like the culprit: an amplifier.

So where the search on identical inputs finds no module clearly wrong, the trace asks the model
instead. The Flax model runs again with one module's first call given torch's arrays: its
inputs (everything upstream made identical) or its outputs (everything up to and inside it
made identical), and the model's output is held to torch's under the comparison's tolerance
(not its mask: padded positions count). A module holds
the source of the difference when torch's outputs in its place bring the model within its
tolerance and torch's inputs do not; among a module's aligned children, in execution order,
the first whose outputs do so is followed down (each tried in turn: with skip connections a
later child need not fix what an earlier one started). Where that child's inputs already do,
the difference arises in the parent's own code before it.

Rounding that accumulates over many modules has no such place: each module's share of the
model's error is small. A module is followed only where giving it torch's inputs instead of
its outputs makes up most (`SHARE`) of the model's margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_parity.diagnose.arguments import torch_inputs_in_flax_call
from pytest_parity.diagnose.capture import run_flax_patched
from pytest_parity.diagnose.distance import errors_between, in_layout

# The share of the model's margin one module's patch must make up to be followed: a single
# bug makes up nearly all of it (GPT-2's switched GELU: 4.41 of 4.46); rounding accumulated
# over n modules gives each about 1/n of it, and two equal errors each half
# (tests/unit/test_trace_search.py).
SHARE = 2 / 3


@dataclass
class PatchedCulprit:
    """The module the difference starts in, and the runs that showed it."""

    module: Any  # the ModuleVerdict
    before: Any = None  # the aligned child after which it arises (None: the module's start)
    after: Any = None  # the aligned child before which it has arisen (None: its end)
    margins: tuple[tuple[str, float], ...] = ()  # (what was given, the model's margin)


class _Runs:
    """The model's margin with one module given torch's inputs or outputs, each run once."""

    def __init__(self, side: Any, root: Any, tolerance: dict[str, float]):
        self.side, self.root, self.tolerance = side, root, tolerance
        self.seen: dict[tuple[str, str], float | None] = {}

    def margin(self, verdict: Any, where: str) -> float | None:
        """The model's output margin with `verdict`'s module given torch's `where`
        ("inputs" or "outputs"); None where torch's arrays do not fit the Flax call's."""
        key = (verdict.pair.flax, where)
        if key not in self.seen:
            self.seen[key] = self._run(verdict, where)
        return self.seen[key]

    def _run(self, verdict: Any, where: str) -> float | None:
        side = self.side
        torch_call = side.torch.calls[verdict.pair.torch]
        flax_call = side.flax.calls[verdict.pair.flax]
        if where == "inputs":
            given = torch_inputs_in_flax_call(flax_call, torch_call, side.image_rank)
        else:
            given = _torch_outputs(flax_call.outputs, torch_call.outputs, side.image_rank)
        if given is None:
            return None
        try:
            outputs = run_flax_patched(side.flax_module, side.flax_variables, side.flax_inputs,
                                       verdict.pair.flax, **{f"{where}_given": given})
        except Exception:  # a call that cannot take them: this module is not judged this way
            return None
        errors = errors_between(outputs, side.torch.calls[self.root.pair.torch].outputs,
                                side.image_rank, self.tolerance)
        return None if errors is None else errors.margin


def _torch_outputs(flax_arrays: list[np.ndarray], torch_arrays: list[np.ndarray],
                   image_rank: int | None) -> list[np.ndarray] | None:
    """Torch's output leaves in Flax's layout and dtype, where each fits its Flax leaf."""
    if len(flax_arrays) != len(torch_arrays):
        return None
    given = [in_layout(t, f.shape, image_rank, to_flax=True)
             for t, f in zip(torch_arrays, flax_arrays, strict=True)]
    if any(array is None for array in given):
        return None
    return [np.ascontiguousarray(array).astype(flax.dtype)
            for array, flax in zip(given, flax_arrays, strict=True)]


def _first_fixing(children: list[Any], runs: _Runs) -> int | None:
    """The first child, in execution order, whose outputs, given torch's, bring the model
    within its tolerance. Each is tried in turn, not bisected: a later child need not fix what
    an earlier one started (transformers' `BertOutput` adds the attention's output, Flax's
    own, back in: given torch's intermediate output, an attention bug stays)."""
    for index, child in enumerate(children):
        margin = runs.margin(child, "outputs")
        if margin is not None and margin <= 1.0:
            return index
    return None


def culprit_by_patching(root: Any, verdicts: list[Any], side: Any,
                        tolerance: dict[str, float], children_of: Any, start: Any = None
                        ) -> PatchedCulprit | None:
    """The module the model's failure starts in (module by module from `start`, the root by
    default, each level's aligned children in execution order); None where no module holds
    most of it."""
    base = root.output_margin or 0.0
    if base <= 1.0:
        return None
    runs, module = _Runs(side, root, tolerance), start or root
    margins: list[tuple[str, float]] = []
    while True:
        children = children_of(module, verdicts)
        index = _first_fixing(children, runs) if children else None
        if index is None:  # no child's outputs fix it: the module's own code, after them
            if any(runs.seen.get((c.pair.flax, "outputs"), 0.0) is None for c in children):
                return None  # a child that could not take torch's outputs may hold it
            before = children[-1] if children else None
            return _found(module, before, None, margins, root)
        child = children[index]
        fixed = runs.margin(child, "outputs") or 0.0
        given_inputs = runs.margin(child, "inputs")
        margins.append((f"{child.pair.torch} outputs", fixed))
        if given_inputs is not None:
            margins.append((f"{child.pair.torch} inputs", given_inputs))
        if given_inputs is not None and given_inputs > 1.0 and \
                given_inputs - fixed >= SHARE * base:
            module = child  # it is inside this child
            continue
        previous = children[index - 1] if index > 0 else None
        unfixed = runs.margin(previous, "outputs") if previous is not None else base
        if given_inputs is not None and given_inputs <= 1.0 and \
                unfixed is not None and unfixed - given_inputs >= SHARE * base:
            return _found(module, previous, child, margins, root)  # between the two
        return None  # spread over modules: rounding accumulated


def _found(module: Any, before: Any, after: Any, margins: list[tuple[str, float]],
           root: Any) -> PatchedCulprit | None:
    if module is root and before is None and after is None:
        return None
    return PatchedCulprit(module, before, after, tuple(margins))
