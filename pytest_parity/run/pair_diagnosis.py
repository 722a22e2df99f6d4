"""A loaded pair's diagnosis: in its own dtype, or first in its reference dtype where it is a
low-precision case; and the settings audit a failing gradient or steps check ends with.
`pair` is a pytest_parity.run.loaded.LoadedPair (which calls these)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pytest_parity.arrays import to_numpy
from pytest_parity.compare import compare
from pytest_parity.diagnose import Diagnosis, Finding, audit_weights, converter_finding, mode
from pytest_parity.errors import PREFIX
from pytest_parity.layouts import Layout
from pytest_parity.run.diagnosed import diagnosis_of
from pytest_parity.run.reference import (
    precision,
    rounded_inputs,
    trace_tolerance,
    wanted,
)
from pytest_parity.run.sides import host_input

# Cases whose failure is traced in their reference dtype first (`_widened`).
WIDENED_TRACE = ("bfloat16", "float16")


def diagnosed(pair: Any, inputs: Any, flax_inputs: Any, tolerance: dict[str, float], *,
              descend: bool | None, every_module_alone: bool, training: bool) -> Diagnosis:
    """LoadedPair.diagnose: `tolerance` the pair's for its dtype, rtol/atol given applied."""
    layout = pair.layout
    flax_given = pair._flax_given(inputs, flax_inputs)
    if pair.dtype in WIDENED_TRACE:
        widened = _widened(pair, inputs, flax_given, flax_inputs is not None, descend,
                           every_module_alone, training)
        # Only where float32 sees where it goes wrong: a bug of the low precision itself (a
        # missing upcast) agrees there, and is traced in the case's dtype instead.
        if widened is not None and (widened.trace.culprit or widened.trace.inputs_differ):
            return widened
    if wanted(pair.dtype) and not tolerance:  # judged by its budget: so are its modules
        tolerance = trace_tolerance(pair.reference, pair.torch_forward(inputs), inputs)
    inputs_differ = flax_inputs is not None and not _agree(
        _host(flax_given, pair.dtype, layout, inputs), _host(inputs, pair.dtype), tolerance)
    diagnosis = diagnosis_of(
        mapping=pair.pair.mapping, torch_model=pair.torch_model, flax_module=pair.flax_model,
        flax_variables=pair.flax_variables, inputs=inputs, flax_inputs=flax_given,
        layout=layout, device=pair.device, dtype=pair.dtype, tolerance=tolerance,
        inputs_differ=inputs_differ, descend=descend,
        every_module_alone=every_module_alone, training=training)
    if pair.variables_given and diagnosis.weights:
        diagnosis.weights.insert(0, converter_finding(diagnosis.weights, pair.pair.mapping))
    return diagnosis


def _widened(pair: Any, inputs: Any, flax_given: Any, own_flax_inputs: bool,
             descend: bool | None, every_module_alone: bool, training: bool
             ) -> Diagnosis | None:
    """The diagnosis of a low-precision case run on its reference sides: the same weights and
    inputs, as the case's dtype rounded them, computed in float32 and held to the pair's
    float32 tolerance. In bfloat16 each module's own rounding is as large as many bugs'
    effect: the trace there said "none" for detected untransposed kernels and shifted position
    embeddings. None for a Flax side without a module."""
    sides = pair.reference
    if sides.flax_module is None:
        return None
    wide, layout = sides.reference_dtype, pair.layout
    tolerance = pair.pair.tolerance(wide)
    torch_given = rounded_inputs(inputs, pair.dtype)
    flax_rounded = rounded_inputs(flax_given, pair.dtype)
    inputs_differ = own_flax_inputs and not _agree(
        _host(flax_rounded, wide, layout, torch_given), _host(torch_given, wide), tolerance)
    with precision(wide):
        diagnosis = diagnosis_of(
            mapping=pair.pair.mapping, torch_model=sides.torch_model,
            flax_module=sides.flax_module, flax_variables=sides.flax_variables,
            inputs=torch_given, flax_inputs=flax_rounded, layout=layout, device=pair.device,
            dtype=wide, tolerance=tolerance, inputs_differ=inputs_differ, descend=descend,
            every_module_alone=every_module_alone, training=training)
    diagnosis.trace.traced_in = f"{wide}, on the {pair.dtype}-rounded weights and inputs"
    if diagnosis.weights:  # named as the case holds them, in its dtype (the same values)
        diagnosis.weights = _weights_audit(pair)
    if pair.variables_given and diagnosis.weights:
        diagnosis.weights.insert(0, converter_finding(diagnosis.weights, pair.pair.mapping))
    return diagnosis


def _weights_audit(pair: Any) -> list[Finding]:
    """The weight audit of the pair's own variables, in its dtype."""
    import jax

    torch_state = {key: to_numpy(value) for key, value in pair.torch_model.state_dict().items()}
    return audit_weights(pair.pair.mapping, torch_state,
                         jax.tree_util.tree_map(np.asarray, pair.flax_variables))


def with_training_settings(pair: Any, check: Callable[[], Any], inputs: Any,
                           flax_inputs: Any) -> Any:
    """Run a gradient or steps check; where it fails (and `--parity-trace` wants), its failure
    text ends with the settings audit, the settings that change training only included
    (BatchNorm momentum, padding_idx, dropout): a forward diagnosis leaves them out, since
    they cannot explain a forward difference."""
    __tracebackhide__ = True
    try:
        return check()
    except AssertionError as failure:
        if not mode.wanted(False) or inputs is None:
            raise
        try:
            settings = pair.diagnose(inputs, flax_inputs=flax_inputs, descend=False,
                                     training=True).settings
        except Exception as error:  # the failure stands; the audit says it could not run
            lines = [f"{PREFIX} no settings audit: it failed with "
                     f"{type(error).__name__}: {error}"]
        else:
            lines = [f"{PREFIX} settings audit (training included): "
                     f"{len(settings) or 'nothing'} differ{'s' if len(settings) <= 1 else ''}",
                     *(f"  {finding.line()}" for finding in settings)]
        raise AssertionError("\n".join([str(failure), *lines])) from None


def _host(given: Any, dtype: str, layout: Layout = Layout.SAME, torch_given: Any = None
          ) -> Any:
    """Inputs as both sides get them on the host, in torch's layout."""
    if isinstance(given, dict):
        return {name: host_input(value, dtype) for name, value in given.items()}
    return layout.output_to_torch(host_input(given, dtype), np.ndim(torch_given)
                                  if torch_given is not None else np.ndim(given))


def _agree(flax_inputs: Any, torch_inputs: Any, tolerance: dict[str, float]) -> bool:
    """Whether the two sides' own inputs agree (inputs of other shapes do not)."""
    try:
        return compare(flax_inputs, torch_inputs, name="inputs", rtol=tolerance.get("rtol"),
                       atol=tolerance.get("atol")).passed
    except AssertionError:
        return False
