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
from itertools import pairwise
from typing import Any

from pytest_parity.diagnose.arguments import paired_inputs, torch_inputs_in_flax_call
from pytest_parity.diagnose.capture import FlaxCapture, TorchCapture, run_flax_module
from pytest_parity.diagnose.distance import errors_between
from pytest_parity.diagnose.modules import ModulePair
from pytest_parity.diagnose.patching import culprit_by_patching
from pytest_parity.threads import thread_map

# How far beyond the case's tolerance a module's error on identical inputs must be for the
# trace to blame it. On identical inputs correct modules stay within 1.08x the tolerance (the
# worst, ResNet-34 layer2.3.conv1 in float32: a 3x3x128 reduction with float32 atol 1e-5;
# every zoo model in float32 and bfloat16; whole bfloat16 stages 1.56x: docs/diagnosis.md),
# while every porting bug of the test suite (tests/zoo/test_port_bugs_localized.py) is above
# 52x: a factor of 4 keeps rounding noise from ever being blamed and still finds them all.
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
    isolated_error: float | None = None  # judged on torch's inputs (or naturally: `judged`)
    isolated_margin: float | None = None
    judged: str | None = None  # "alone", or "natural" where it could not run alone

    @property
    def fails_alone(self) -> bool:
        return self.isolated_margin is not None and self.isolated_margin > BLAME

    def to_record(self) -> dict[str, Any]:
        return {"torch": self.pair.torch, "flax": self.pair.flax, "order": self.order,
                "input_max_abs": self.input_error, "input_margin": self.input_margin,
                "output_max_abs": self.output_error,
                "output_margin": self.output_margin, "alone_max_abs": self.isolated_error,
                "alone_margin": self.isolated_margin, "judged": self.judged}


@dataclass
class Trace:
    modules: list[ModuleVerdict]  # in torch's execution order
    culprit: ModuleVerdict | None = None
    inputs_differ: bool = False
    own_code: list[str] = field(default_factory=list)  # weightless torch modules suspected
    between: tuple[str, str] = ("", "")  # the aligned children the difference is between
    # Found by running the model with torch's arrays given (patching.py): what was given, and
    # the model's output margin then.
    patched: tuple[tuple[str, float], ...] = ()
    traced_in: str = ""  # a low-precision case traced in its reference dtype: which, on what


@dataclass
class Captures:
    """What the trace works on: both sides' captures, the Flax variables and where they live,
    and how arrays move between layouts."""

    torch: TorchCapture
    flax: FlaxCapture
    flax_variables: Any
    flax_device: Any  # where the Flax side ran: a module run alone runs there too
    image_rank: int | None  # the input's rank where it is an image batch (NCHW <-> NHWC)
    flax_module: Any = None  # the Flax side and its placed inputs, to run it patched
    flax_inputs: Any = None


def _verdicts(pairs: list[ModulePair], side: Captures, tolerance: dict[str, float]
              ) -> list[ModuleVerdict]:
    """Every aligned module both sides ran, its natural input and output errors (the
    comparisons spread over the thread pool: numpy releases the GIL on large arrays)."""
    order = {name: index for index, name in enumerate(side.torch.order)}
    ran = [pair for pair in pairs
           if pair.torch in side.torch.calls and pair.flax in side.flax.calls]

    def judged(pair: ModulePair) -> ModuleVerdict:
        torch_call, flax_call = side.torch.calls[pair.torch], side.flax.calls[pair.flax]
        verdict = ModuleVerdict(pair, order.get(pair.torch, len(order)))
        both = paired_inputs(flax_call, torch_call)
        inputs = errors_between([flax_call.inputs[f] for f, _ in both],
                                [torch_call.inputs[t] for _, t in both], side.image_rank,
                                tolerance)
        outputs = errors_between(flax_call.outputs, torch_call.outputs, side.image_rank,
                                 tolerance)
        if inputs is not None:
            verdict.input_error, verdict.input_margin = inputs.max_abs, inputs.margin
        if outputs is not None:
            verdict.output_error, verdict.output_margin = outputs.max_abs, outputs.margin
        return verdict

    return sorted(thread_map(judged, ran), key=lambda v: v.order)


def _judge(verdict: ModuleVerdict, side: Captures, tolerance: dict[str, float], *,
           alone: bool = False) -> None:
    """Judge a module on identical inputs. Where its natural inputs already agree (within the
    tolerance) its natural output is that verdict; otherwise (or `alone`) its Flax side runs
    on the torch module's inputs, held to the torch output. A module that cannot run alone
    (the torch call's arrays do not fit the Flax call's) is judged naturally where its inputs
    agree, and not at all otherwise."""
    import jax

    if verdict.judged is not None:
        return
    agreeing = verdict.input_margin is not None and verdict.input_margin <= 1.0
    if agreeing and not alone:
        verdict.judged, verdict.isolated_error, verdict.isolated_margin = \
            "natural", verdict.output_error, verdict.output_margin
        return
    torch_call = side.torch.calls[verdict.pair.torch]
    flax_call = side.flax.calls[verdict.pair.flax]
    given = torch_inputs_in_flax_call(flax_call, torch_call, side.image_rank)
    errors = None
    if given is not None:
        try:
            outputs = run_flax_module(side.flax, verdict.pair.flax, side.flax_variables,
                                      [jax.device_put(a, side.flax_device) for a in given])
            errors = errors_between(outputs, torch_call.outputs, side.image_rank, tolerance)
        except Exception:  # a module that cannot run alone is judged naturally below
            errors = None
    if errors is not None:
        verdict.judged, verdict.isolated_error, verdict.isolated_margin = \
            "alone", errors.max_abs, errors.margin
    elif agreeing:
        verdict.judged, verdict.isolated_error, verdict.isolated_margin = \
            "natural", verdict.output_error, verdict.output_margin


def _first_failing_alone(children: list[ModuleVerdict], side: Captures,
                         tolerance: dict[str, float]) -> ModuleVerdict | None:
    """The first child, in execution order, that fails on identical inputs. A child whose
    natural output is within BLAME is taken to be within it on its own too (its natural inputs
    carry more error, not less); one whose natural inputs agree is judged on its natural
    output; so only the children after the divergence are run on their own."""
    for child in children:
        if child.output_margin is not None and child.output_margin <= BLAME:
            continue
        _judge(child, side, tolerance)
        if child.fails_alone:
            return child
    return None


def children_of(parent: ModuleVerdict, verdicts: list[ModuleVerdict]) -> list[ModuleVerdict]:
    """The aligned modules directly inside `parent` (no aligned module between), in order."""
    inside = [v for v in verdicts if v is not parent and parent.pair.contains(v.pair)]
    return [v for v in inside
            if not any(o is not v and o.pair.contains(v.pair) for o in inside)]


def _jump(culprit: ModuleVerdict, children: list[ModuleVerdict]
          ) -> tuple[ModuleVerdict | None, ModuleVerdict | None]:
    """The aligned children the culprit's difference arises between: where the margin, from
    the culprit's input through each child's input to the culprit's output, grows by the
    largest factor (margins below 1 count as 1: rounding). The first child whose input is over
    its tolerance is not it: rounding takes a late layer's input over its margin of 1 long
    before a missing final LayerNorm makes the jump."""
    steps = [culprit.input_margin, *(child.input_margin for child in children),
             culprit.output_margin]
    levels: list[float] = []
    for margin in steps:  # a child without a figure keeps the level before it
        levels.append(max(1.0, margin) if margin is not None else
                      levels[-1] if levels else 1.0)
    growth = [after / before for before, after in pairwise(levels)]
    index = growth.index(max(growth)) if growth else len(children)
    return (children[index - 1] if index > 0 else None,
            children[index] if index < len(children) else None)


def _own_code(culprit: ModuleVerdict, before: ModuleVerdict | None,
              after: ModuleVerdict | None, children: list[ModuleVerdict], side: Captures,
              torch_model: Any) -> tuple[list[str], tuple[str, str]]:
    """The weightless torch modules run inside the culprit but in none of its aligned children,
    between `before` and `after` (None: the culprit's start, its end)."""
    low = before.order if before else culprit.order
    high = after.order if after else len(side.torch.order)
    parent = culprit.pair.torch.rpartition(".")[0]

    def relative(name: str) -> str:  # `mlp.1` inside `...encoder_layer_3.mlp`
        return name.removeprefix(f"{parent}.") if parent else name

    position = {name: index for index, name in enumerate(side.torch.order)}
    own = [f"{relative(name)} ({_described(torch_model.get_submodule(name))})"
           for name in own_modules(culprit, children, side.torch.order)
           if low < position[name] < high]
    return own, (relative(before.pair.torch) if before else "",
                 relative(after.pair.torch) if after else "")


def own_modules(module: ModuleVerdict, children: list[ModuleVerdict], order: list[str]
                ) -> list[str]:
    """The torch modules run inside `module` but inside none of its aligned children: its own
    code (activations, pooling, dropout), in execution order."""
    def inside(verdict: ModuleVerdict, name: str) -> bool:
        return verdict.pair.contains(ModulePair(name, ""))

    return [name for name in order if name != module.pair.torch and inside(module, name)
            and not any(inside(child, name) for child in children)]


def _described(module: Any) -> str:
    """A weightless torch module with its settings: `GELU(approximate='none')`."""
    text = repr(module)
    return text if "\n" not in text and len(text) <= 80 else type(module).__name__


def trace(pairs: list[ModulePair], side: Captures, torch_model: Any, tolerance: dict[str, float],
          *, inputs_differ: bool = False, descend: bool | None = None,
          every_module_alone: bool = False) -> Trace:
    """Compare every aligned module and, where the model's output fails (or `descend`), find
    the first divergent one: only a module beyond BLAME on identical inputs is blamed.
    `every_module_alone` runs every module on its own, not only those the search needs."""
    verdicts = _verdicts(pairs, side, tolerance)
    result = Trace(verdicts, inputs_differ=inputs_differ)
    root = next((v for v in verdicts if not v.pair.torch), None)
    if root is None or inputs_differ:
        return result
    root.judged, root.isolated_error, root.isolated_margin = \
        "alone", root.output_error, root.output_margin  # the model on identical inputs
    if every_module_alone:  # to measure what correct modules do on identical inputs
        for verdict in verdicts:
            _judge(verdict, side, tolerance, alone=True)
    if not ((root.output_margin or 0.0) > 1.0 if descend is None else descend):
        return result
    chain, current = [root], _first_failing_alone(children_of(root, verdicts), side, tolerance)
    while current is not None:
        chain.append(current)
        current = _first_failing_alone(children_of(current, verdicts), side, tolerance)
    found = len(chain)
    while len(chain) > 1 and not _fails_on_torchs_inputs(chain[-1], side, tolerance):
        chain.pop()  # an amplifier: given torch's inputs, its output agrees; its parent stands
    culprit = chain[-1]
    if (culprit is root or len(chain) < found) and side.flax_module is not None:
        patched = culprit_by_patching(root, verdicts, side, tolerance, children_of,
                                      start=culprit)
        if patched is not None:
            result.culprit, result.patched = patched.module, patched.margins
            result.own_code, result.between = _own_code(
                patched.module, patched.before, patched.after,
                children_of(patched.module, verdicts), side, torch_model)
            return result
    if culprit is root and not root.fails_alone:
        return result  # no module is clearly wrong: the error accumulates from rounding
    result.culprit = culprit
    children = children_of(culprit, verdicts)
    result.own_code, result.between = _own_code(culprit, *_jump(culprit, children), children,
                                                side, torch_model)
    return result


def _fails_on_torchs_inputs(verdict: ModuleVerdict, side: Captures,
                            tolerance: dict[str, float]) -> bool:
    """Whether a module blamed on its natural output (its inputs agreed within tolerance)
    still fails given torch's inputs exactly. A normalizer fed a difference within tolerance
    scales it up past it (GPT-2's final LayerNorm behind a switched GELU: inputs at margin
    0.16, output 4.44): on torch's inputs it agrees. A module that cannot run alone stands."""
    if verdict.judged != "natural":
        return True
    alone = ModuleVerdict(verdict.pair, verdict.order, verdict.input_error,
                          verdict.input_margin, verdict.output_error, verdict.output_margin)
    _judge(alone, side, tolerance, alone=True)
    return alone.judged != "alone" or alone.fails_alone
