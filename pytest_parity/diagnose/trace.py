"""The activation trace: every aligned module compared, and the first divergent one found.

Errors grow downstream, so the largest error says little about where a port goes wrong. Each
module is judged on identical inputs instead: its Flax side runs on its own on the inputs the
torch module received, and its output is held to the torch module's output under the case's
tolerance policy. A module inherits no error that way, so rounding noise from upstream cannot
make it fail, and a module that fails is wrong itself (its own code or a child's).

The search walks down from the model: among a failing module's aligned children (execution
order), the first that fails on its own is followed; where none fails, the module itself is
the culprit, its own code between its children (activations, pooling, reshapes) is where the
difference is, and the child whose natural input first diverges says between which children.
When the two sides were given different inputs, the input pipeline is the culprit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_parity.compare import case_tolerances
from pytest_parity.compare.tolerance import resolve_layers
from pytest_parity.diagnose.capture import FlaxCapture, TorchCapture, run_flax_module
from pytest_parity.diagnose.modules import ModulePair
from pytest_parity.threads import thread_map

# How far beyond the case's tolerance a module's error on identical inputs must be for the
# trace to blame it. On identical inputs correct modules stay within 1.08x the tolerance (the
# worst, ResNet-34 layer2.3.conv1 in float32: a 3x3x128 reduction with float32 atol 1e-5;
# every zoo model in float32 and bfloat16, docs/diagnosis.md), while every porting bug of the
# test suite (tests/zoo/test_port_bugs_localized.py) is above 25x: a factor of 4 keeps
# rounding noise from ever being blamed and still finds them all.
BLAME = 4.0


@dataclass
class ModuleVerdict:
    """One aligned module: natural input and output errors, and its error on its own."""

    pair: ModulePair
    order: int
    input_error: float | None = None
    input_margin: float | None = None
    output_error: float | None = None
    output_margin: float | None = None
    isolated_error: float | None = None
    isolated_margin: float | None = None

    @property
    def fails_alone(self) -> bool:
        return self.isolated_margin is not None and self.isolated_margin > BLAME

    def to_record(self) -> dict[str, Any]:
        return {"torch": self.pair.torch, "flax": self.pair.flax, "order": self.order,
                "input_max_abs": self.input_error, "input_margin": self.input_margin,
                "output_max_abs": self.output_error,
                "output_margin": self.output_margin, "alone_max_abs": self.isolated_error,
                "alone_margin": self.isolated_margin}


@dataclass
class Trace:
    modules: list[ModuleVerdict]  # in torch's execution order
    culprit: ModuleVerdict | None = None
    inputs_differ: bool = False
    own_code: list[str] = field(default_factory=list)  # weightless torch modules suspected
    between: tuple[str, str] = ("", "")  # the aligned children the difference is between


@dataclass
class Side:
    """What the trace needs of one run: the capture and how to move arrays between layouts."""

    torch: TorchCapture
    flax: FlaxCapture
    flax_variables: Any
    image_rank: int | None  # the input's rank where it is an image batch (NCHW <-> NHWC)


def _in_layout(array: np.ndarray, shape: tuple[int, ...], image_rank: int | None,
               to_flax: bool) -> np.ndarray | None:
    """`array` in the other side's layout, where `shape` says which (None: no way fits)."""
    if image_rank is not None and array.ndim == image_rank:
        moved = np.moveaxis(array, 1, -1) if to_flax else np.moveaxis(array, -1, 1)
        if moved.shape == tuple(shape):
            return moved
    return array if array.shape == tuple(shape) else None


@dataclass(frozen=True)
class Errors:
    max_abs: float
    margin: float  # worst |flax - torch| / (atol + rtol * |torch|): <= 1 agrees


def _errors(flax_arrays: list[np.ndarray], torch_arrays: list[np.ndarray], side: Side,
            tolerance: dict[str, float]) -> Errors | None:
    """How far the leaves both sides have are apart (Flax's in torch's layout), under the
    case's tolerance policy; infinitely far where both have leaves but none fits the other's
    shape; None where a side has none. Only the figures a verdict needs: a module's
    activations are large and many, so no failure report is built."""
    max_abs = margin = 0.0
    compared = False
    for flax_array, torch_array in zip(flax_arrays, torch_arrays, strict=False):
        moved = _in_layout(flax_array, torch_array.shape, side.image_rank, to_flax=False)
        if moved is None:
            continue
        compared = True
        names = (str(moved.dtype), str(torch_array.dtype))
        policy, _ = resolve_layers(names, [("pair", tolerance.get("rtol"),
                                            tolerance.get("atol")), *case_tolerances.current()])
        max_abs_here, margin_here = _apart(moved, torch_array, policy.rtol, policy.atol)
        max_abs, margin = max(max_abs, max_abs_here), max(margin, margin_here)
    if not compared and flax_arrays and torch_arrays:  # both ran, but on other shapes
        return Errors(float("inf"), float("inf"))
    return Errors(max_abs, margin) if compared else None


def _apart(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float
           ) -> tuple[float, float]:
    """Max abs difference and margin (worst |a - e| / (atol + rtol * |e|)); NaN and inf must
    sit at the same places with the same signs (else an infinite margin). A few passes over
    the data: the non-finite checks run only where the difference is not finite."""
    wide = np.float64 if np.float64 in (actual.dtype, expected.dtype) else np.float32
    a: np.ndarray = actual.astype(wide, copy=False)
    e: np.ndarray = expected.astype(wide, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        difference = np.abs(a - e)
        largest = float(np.max(difference, initial=0.0))
        if not np.isfinite(largest):
            finite = np.isfinite(a) & np.isfinite(e)
            if np.any(~finite & ~((np.isnan(a) & np.isnan(e)) | (a == e))):
                return float("inf"), float("inf")
            difference = np.where(finite, difference, 0.0)
            largest = float(np.max(difference, initial=0.0))
            e = np.where(finite, e, 0.0)
        if largest == 0.0:
            return 0.0, 0.0
        allowed = np.abs(e) * wide(rtol) + wide(atol)
        return largest, float(np.max(np.divide(difference, allowed, out=difference,
                                               where=allowed > 0), initial=0.0))


def _verdicts(pairs: list[ModulePair], side: Side, tolerance: dict[str, float]
              ) -> list[ModuleVerdict]:
    """Every aligned module both sides ran, its natural input and output errors (the
    comparisons spread over the thread pool: numpy releases the GIL on large arrays)."""
    order = {name: index for index, name in enumerate(side.torch.order)}
    ran = [pair for pair in pairs
           if pair.torch in side.torch.calls and pair.flax in side.flax.calls]

    def judged(pair: ModulePair) -> ModuleVerdict:
        torch_call, flax_call = side.torch.calls[pair.torch], side.flax.calls[pair.flax]
        verdict = ModuleVerdict(pair, order.get(pair.torch, len(order)))
        inputs = _errors(flax_call.inputs, torch_call.inputs, side, tolerance)
        outputs = _errors(flax_call.outputs, torch_call.outputs, side, tolerance)
        if inputs is not None:
            verdict.input_error, verdict.input_margin = inputs.max_abs, inputs.margin
        if outputs is not None:
            verdict.output_error, verdict.output_margin = outputs.max_abs, outputs.margin
        return verdict

    return sorted(thread_map(judged, ran), key=lambda v: v.order)


def _judge_alone(verdict: ModuleVerdict, side: Side, tolerance: dict[str, float]) -> None:
    """Run the Flax module on the torch module's inputs; hold it to the torch output."""
    import jax

    if verdict.isolated_margin is not None:
        return
    torch_call = side.torch.calls[verdict.pair.torch]
    flax_call = side.flax.calls[verdict.pair.flax]
    given = [_in_layout(t, f.shape, side.image_rank, to_flax=True)
             for t, f in zip(torch_call.inputs, flax_call.inputs, strict=False)]
    if len(given) < len(flax_call.inputs) or any(array is None for array in given):
        return  # the torch call's arguments do not fit the Flax call's
    device = next(iter(jax.tree_util.tree_leaves(side.flax_variables)[0].devices()))
    try:
        outputs = run_flax_module(side.flax, verdict.pair.flax, side.flax_variables,
                                  [jax.device_put(np.ascontiguousarray(a), device)
                                   for a in given])
    except ValueError:
        return
    errors = _errors(outputs, torch_call.outputs, side, tolerance)
    if errors is not None:
        verdict.isolated_error, verdict.isolated_margin = errors.max_abs, errors.margin


def _first_failing_alone(children: list[ModuleVerdict], side: Side,
                         tolerance: dict[str, float]) -> ModuleVerdict | None:
    """The first child, in execution order, that fails on torch's inputs. A child whose natural
    output is within BLAME is taken to be within it on its own too (its natural inputs carry
    more error, not less), so only the children after the divergence are run on their own."""
    for child in children:
        if child.output_margin is not None and child.output_margin <= BLAME:
            continue
        _judge_alone(child, side, tolerance)
        if child.fails_alone:
            return child
    return None


def _children(parent: ModuleVerdict, verdicts: list[ModuleVerdict]) -> list[ModuleVerdict]:
    """The aligned modules directly inside `parent` (no aligned module between), in order."""
    inside = [v for v in verdicts if v is not parent and parent.pair.contains(v.pair)]
    return [v for v in inside
            if not any(o is not v and o.pair.contains(v.pair) for o in inside)]


def _own_code(culprit: ModuleVerdict, children: list[ModuleVerdict], side: Side,
              torch_model: Any) -> tuple[list[str], tuple[str, str]]:
    """The weightless torch modules run inside the culprit but in none of its aligned children
    (between the last child whose input agreed and the first whose input diverged)."""
    diverging = next((c for c in children if (c.input_margin or 0.0) > 1.0), None)
    index = children.index(diverging) if diverging else len(children)
    before = children[index - 1] if index > 0 else None
    low = before.order if before else culprit.order
    high = diverging.order if diverging else len(side.torch.order)
    def relative(name: str) -> str:
        return name.removeprefix(f"{culprit.pair.torch}.") if culprit.pair.torch else name

    own = []
    for position, name in enumerate(side.torch.order):
        inside = culprit.pair.contains(ModulePair(name, ""))
        in_child = any(c.pair.contains(ModulePair(name, "")) for c in children)
        if inside and not in_child and name != culprit.pair.torch and low < position < high:
            own.append(f"{relative(name)} ({type(torch_model.get_submodule(name)).__name__})")
    return own, (relative(before.pair.torch) if before else "",
                 relative(diverging.pair.torch) if diverging else "")


def trace(pairs: list[ModulePair], side: Side, torch_model: Any, tolerance: dict[str, float],
          *, inputs_differ: bool = False, descend: bool | None = None) -> Trace:
    """Compare every aligned module and, where the model's output fails (or `descend`), find
    the first divergent one."""
    verdicts = _verdicts(pairs, side, tolerance)
    result = Trace(verdicts, inputs_differ=inputs_differ)
    root = next((v for v in verdicts if not v.pair.torch), None)
    if root is None or inputs_differ:
        return result
    root.isolated_error, root.isolated_margin = root.output_error, root.output_margin
    if not (root.fails_alone if descend is None else descend):
        return result
    current: ModuleVerdict | None = root
    while current is not None:
        culprit, current = current, _first_failing_alone(_children(current, verdicts), side,
                                                        tolerance)
    current = culprit
    if current is root and not root.fails_alone:
        return result
    result.culprit = current
    result.own_code, result.between = _own_code(current, _children(current, verdicts), side,
                                                torch_model)
    return result
