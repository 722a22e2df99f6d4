"""Both sides once more in the reference precision, for a budget verdict.

A bfloat16 or float16 case judged by its error budget (pytest_parity.compare.budget) runs
each side twice: in the case's dtype, and in the reference dtype (float32; float64 for a
float32 budget) on the *same* weights and inputs, i.e. those already rounded to the case's
dtype and held exactly in the wider one. What differs between the two runs of one framework is
then its arithmetic's rounding alone, which is all the cross-framework error is made of.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_parity.compare import REFERENCE_DTYPES, case_tolerances, element_tolerance, leaves
from pytest_parity.layouts import Layout
from pytest_parity.run.sides import (
    flax_module_in,
    host_input,
    placed_variables,
    run_flax,
    run_torch,
    torch_model_on,
)


def wanted(dtype: str, *budget_by_default: tuple[str, ...]) -> bool:
    """Whether the running case judges `dtype` by its budget (so the references must run);
    `budget_by_default` as case_tolerances.verdict takes it."""
    return dtype in REFERENCE_DTYPES and case_tolerances.verdict(dtype, *budget_by_default) \
        == "budget"


@contextlib.contextmanager
def precision(dtype: str) -> Iterator[None]:
    """jax computes in float64 only inside `jax.enable_x64` (else it truncates to float32)."""
    if dtype != "float64":
        yield
        return
    import jax

    with jax.enable_x64(True):
        yield


def rounded_inputs(inputs: Any, dtype: str) -> Any:
    """Inputs as the case's dtype rounds them, held in its reference dtype (integer inputs,
    e.g. token ids, as they are)."""
    reference = REFERENCE_DTYPES[dtype]
    if isinstance(inputs, Mapping):
        return {name: rounded_inputs(value, dtype) for name, value in inputs.items()}
    return host_input(host_input(inputs, dtype), reference)


@dataclass
class ReferenceSides:
    """A torch model and a Flax apply computing in the reference dtype on the case's rounded
    weights (`flax_variables` None: a Flax function without variables)."""

    device: str
    dtype: str  # the case's
    torch_model: Any
    flax_apply: Callable[..., Any]
    flax_variables: Any
    flax_module: Any = None  # the module flax_apply applies (None: a function)

    @property
    def reference_dtype(self) -> str:
        return REFERENCE_DTYPES[self.dtype]

    def outputs(self, torch_inputs: Any, flax_inputs: Any, layout: Layout = Layout.SAME
                ) -> tuple[Any, Any]:
        """(Flax's, torch's) outputs in the reference dtype, as numpy in torch's layout, on
        inputs given as the case gives them (each rounded to the case's dtype first)."""
        reference = self.reference_dtype
        torch_out = run_torch(self.torch_model, rounded_inputs(torch_inputs, self.dtype),
                              self.device, reference)
        with precision(reference):
            flax_out = run_flax(self.flax_apply, rounded_inputs(flax_inputs, self.dtype),
                                self.device, reference, variables=self.flax_variables,
                                layout=layout)
        return flax_out, torch_out


def trace_tolerance(sides: ReferenceSides, torch_out: Any, torch_inputs: Any
                    ) -> dict[str, float]:
    """The tolerance a trace of this case judges its modules by: the budget's element bound
    from torch's drift on these inputs over every output leaf (`torch_out`: torch's output in
    the case's dtype)."""
    torch_reference = run_torch(sides.torch_model, rounded_inputs(torch_inputs, sides.dtype),
                                sides.device, sides.reference_dtype)
    references = leaves(torch_reference)

    def largest_drift(low: Any, reference: Any) -> float:
        drift = np.abs(np.asarray(low, np.float64) - np.asarray(reference, np.float64))
        return float(np.max(np.where(np.isfinite(drift), drift, 0.0), initial=0.0))

    return element_tolerance(sides.dtype, max(
        (largest_drift(low, references[path]) for path, low in leaves(torch_out).items()
         if path in references), default=0.0))


def reference_sides(torch_model: Any, flax_module: Any, flax_variables: Any, device: str,
                    dtype: str, flax_function: Callable[..., Any] | None = None
                    ) -> ReferenceSides:
    """Both sides of a case in `dtype` rebuilt in its reference dtype: a copy of the torch
    model and the Flax module's clone, their weights the case's, widened (the case's own
    models are left as they are). `flax_function`: a Flax side without variables."""
    import jax

    reference = REFERENCE_DTYPES[dtype]
    torch_reference = torch_model_on(copy.deepcopy(torch_model), device, reference)
    with precision(reference):
        if flax_function is not None:
            function = flax_function
            return ReferenceSides(device, dtype, torch_reference,
                                  jax.jit(lambda x: function(x)), None)
        module = flax_module_in(flax_module, reference)
        variables = placed_variables(jax.device_get(flax_variables), device, reference)
    return ReferenceSides(device, dtype, torch_reference, jax.jit(module.apply), variables,
                          module)
