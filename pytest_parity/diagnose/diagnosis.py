"""Where a port goes wrong: the weight audit, the settings audit and the activation trace of one
failing input, run together (cheapest first) and reported as one section of the failure."""

from __future__ import annotations

import copy
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_parity.arrays import to_numpy
from pytest_parity.diagnose.capture import FlaxCapture, capture_flax, capture_torch
from pytest_parity.diagnose.findings import Finding
from pytest_parity.diagnose.modules import aligned_modules
from pytest_parity.diagnose.own_code import audit_own_code
from pytest_parity.diagnose.settings import audit_settings
from pytest_parity.diagnose.trace import (
    BLAME,
    Captures,
    ModuleVerdict,
    Trace,
    children_of,
    own_modules,
    trace,
)
from pytest_parity.diagnose.weights import audit_weights
from pytest_parity.errors import PREFIX
from pytest_parity.mapping import Mapping
from pytest_parity.nnx_bridge import is_nnx_module

AROUND = 4  # modules shown before and after the culprit


@dataclass
class Diagnosis:
    """What the audits and the trace found for one check: its settings findings are those
    that can explain that check (a forward check's: only those that change the forward pass;
    a gradient or step check's: those that change training too)."""

    weights: list[Finding]
    settings: list[Finding]
    trace: Trace

    @property
    def found(self) -> bool:
        """Whether anything was found: an audit finding that can explain the check, a culprit,
        or different inputs."""
        return bool(self.weights or self.settings or self.trace.culprit
                    or self.trace.inputs_differ)

    def lines(self) -> list[str]:
        """The failure text's section, audit findings first."""
        lines = [f"{PREFIX} where it goes wrong:"]
        for title, findings in (("weight audit", self.weights), ("settings audit",
                                                                 self.settings)):
            lines.append(f"  {title}: " + (f"{len(findings)} difference"
                                            f"{'s' if len(findings) > 1 else ''}" if findings
                                            else "nothing differs"))
            lines += [f"    {finding.line()}" for finding in findings]
        lines += _trace_lines(self.trace)
        return lines

    def to_record(self) -> dict[str, Any]:
        culprit = self.trace.culprit
        return {
            "weights": [finding.to_record() for finding in self.weights],
            "settings": [finding.to_record() for finding in self.settings],
            "inputs_differ": self.trace.inputs_differ,
            "culprit": culprit.to_record() if culprit else None,
            "own_code": self.trace.own_code, "between": list(self.trace.between),
            "patched": [{"given": given, "output_margin": margin}
                        for given, margin in self.trace.patched],
            "traced_in": self.trace.traced_in,
            "modules": [verdict.to_record() for verdict in self.trace.modules],
        }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def _trace_lines(result: Trace) -> list[str]:
    return ([f"  traced in {result.traced_in} (the case's own rounding hides what one "
             "module does wrong)"] if result.traced_in else []) + _found_lines(result)


def _found_lines(result: Trace) -> list[str]:
    root = next((v for v in result.modules if not v.pair.torch), None)
    if result.inputs_differ:
        sizes = "" if root is None else (
            f": inputs max abs {_fmt(root.input_error)}, margin {root.input_margin or 0:.3g}; "
            f"outputs max abs {_fmt(root.output_error)}, margin {root.output_margin or 0:.3g}")
        return ["  first divergence: the inputs themselves (the input pipeline, e.g. "
                f"preprocessing, differs){sizes}"]
    culprit = result.culprit
    if culprit is None:
        if root is not None and (root.output_margin or 0.0) <= 1.0:
            return ["  first divergent module: none (the outputs agree)"]
        return [f"  first divergent module: none (no module is {BLAME:g}x beyond its tolerance "
                "on identical inputs: the difference is rounding accumulated over many "
                "modules)"]
    if result.patched:
        lines = [f"  first divergent module: {culprit.pair.label()} (inputs max abs "
                 f"{_fmt(culprit.input_error)}, output max abs {_fmt(culprit.output_error)}; "
                 "no module is clearly wrong on its own, but the model's output agrees once "
                 "the Flax side is given torch's arrays past it)",
                 "    the model's output margin with the Flax side given torch's: " + ", ".join(
                     f"{given} {margin:.3g}" for given, margin in result.patched)]
    else:
        lines = [f"  first divergent module: {culprit.pair.label()} (inputs max abs "
                 f"{_fmt(culprit.input_error)}; on torch's inputs its output max abs "
                 f"{_fmt(culprit.isolated_error)}, margin {culprit.isolated_margin or 0:.3g})"]
    before, after = result.between
    if result.own_code or before or after:
        where = f" between {before or '(its start)'} and {after or '(its end)'}"
        lines.append(f"    its own code{where}: "
                     f"{', '.join(result.own_code) or 'no weightless torch module runs there'}")
    index = result.modules.index(culprit)
    shown = result.modules[max(0, index - AROUND):index + AROUND + 1]
    rows = [("", "module (torch)", "input max abs", "output max abs", "alone max abs",
             "margin")]
    rows += [(">" if verdict is culprit else "", verdict.pair.torch or "(root)",
              _fmt(verdict.input_error), _fmt(verdict.output_error),
              _fmt(verdict.isolated_error), _margin(verdict)) for verdict in shown]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines.append("  modules around it, in execution order (alone: the Flax module run on "
                 "torch's inputs):")
    lines += ["    " + "  ".join(cell.ljust(width) for cell, width in
                                 zip(row, widths, strict=True)).rstrip() for row in rows]
    return lines


def _margin(verdict: ModuleVerdict) -> str:
    margin = verdict.isolated_margin if verdict.isolated_margin is not None \
        else verdict.output_margin
    return "-" if margin is None else f"{margin:.3g}"


# Flax modules often take these at call time (`bn(x, use_running_average=not train)`) rather
# than as fields; the settings audit reads fields, so the call's values are set on them.
CALL_TIME_FIELDS = ("use_running_average", "deterministic")


def _with_fields(module: Any, given: dict[str, Any]) -> Any:
    """A Linen module's clone, or a shallow copy of an NNX module (its variables shared),
    with these fields."""
    if not given:
        return module
    if not is_nnx_module(module):
        return module.clone(**given)
    view = copy.copy(module)
    for name, value in given.items():
        setattr(view, name, value)
    return view


def _has_field(module: Any, name: str) -> bool:
    """Whether the module keeps `name` as a field (Linen) or attribute (NNX): modules that
    take it only at the call (transformers' `deterministic`) cannot be given it as one."""
    if is_nnx_module(module):
        return hasattr(module, name)
    return name in getattr(module, "__dataclass_fields__", {})


def _as_called(capture: FlaxCapture) -> dict[str, Any]:
    """Each captured Flax module with the call-time settings of its call as fields, where it
    has such a field."""
    return {path: _with_fields(module, {
        name: value for name, value in capture.templates[path].kwargs.items()
        if name in CALL_TIME_FIELDS and isinstance(value, bool) and _has_field(module, name)})
        for path, module in capture.modules.items()}


def _device_of(flax_inputs: Any) -> Any:
    """The device the Flax inputs are on (the first one's, for named inputs)."""
    first = next(iter(flax_inputs.values())) if isinstance(flax_inputs, dict) else flax_inputs
    return next(iter(first.devices()))


@contextmanager
def _cyclic_collection_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the while, as it was after. Tracing a model
    allocates objects by the hundred thousand, each batch of them starting a collection that
    walks every object the process holds: in a benchmark process holding earlier cases'
    objects, collections took 0.27 s of a ResNet-50 diagnosis (docs/benchmarks.md).
    One diagnosis' cycles are collected after it, by the next collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_cyclic_collection_paused()
def diagnose(*, mapping: Mapping | None, torch_model: Any, flax_module: Any,
             flax_variables: Any, torch_inputs: Any, flax_inputs: Any,
             image_rank: int | None, tolerance: dict[str, float],
             inputs_differ: bool = False, descend: bool | None = None,
             every_module_alone: bool = False, training: bool = False) -> Diagnosis:
    """Audit the weights and settings of every aligned module pair, then trace one input.

    `torch_inputs` and `flax_inputs` are placed on the case's device in its dtype, each in its
    framework's layout; `image_rank` is the input's rank where it is an image batch (its
    channels move between layouts), else None. `training`: the check that failed trains (a
    gradient or step check), so the settings that change training only are reported too; a
    forward check leaves them out (a correct BERT's padding_idx is no culprit of its outputs).
    """
    import jax

    torch_state = {key: to_numpy(value) for key, value in torch_model.state_dict().items()}
    pairs = aligned_modules(mapping, torch_state) if mapping is not None else []
    weights = audit_weights(mapping, torch_state, jax.tree_util.tree_map(
        np.asarray, flax_variables)) if mapping is not None else []
    torch_capture = capture_torch(torch_model, torch_inputs, [p.torch for p in pairs])
    flax_capture = capture_flax(flax_module, flax_variables, flax_inputs,
                                [p.flax for p in pairs])
    settings = audit_settings(torch_model, _as_called(flax_capture),
                              [(p.torch, p.flax) for p in pairs])
    captures = Captures(torch_capture, flax_capture, flax_variables,
                        _device_of(flax_inputs), image_rank, flax_module, flax_inputs)
    result = trace(pairs, captures, torch_model, tolerance, inputs_differ=inputs_differ,
                   descend=descend, every_module_alone=every_module_alone)
    if result.culprit is not None:
        children = children_of(result.culprit, result.modules)
        settings += audit_own_code(
            result.culprit.pair, [c.pair for c in children], torch_model,
            own_modules(result.culprit, children, torch_capture.order), flax_capture,
            flax_variables)
    reported = [finding for finding in settings if training or finding.affects == "forward"]
    return Diagnosis(weights, reported, result)
