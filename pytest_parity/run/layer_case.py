"""One case of a `@parity_test`: both sides built once, each drawn example checked.

The first example fixes what the case needs: the weight mapping (traced on its shape), the
Flax variables, the jitted apply, both sides in the reference precision where the budget
judges the case, and the gradient check where the test asks for gradients
(pytest_parity.run.gradients).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_parity.arrays import to_numpy
from pytest_parity.branches import ParityBranchWarning
from pytest_parity.compare import (
    REFERENCE_DTYPES,
    Comparison,
    StructureMismatch,
    compare,
    format_failure,
    leaves,
)
from pytest_parity.diagnose import Diagnosis
from pytest_parity.errors import PREFIX
from pytest_parity.mapping import Mapping, Rule, automatic_mapping
from pytest_parity.nnx_bridge import NNXPort
from pytest_parity.run import reference as references
from pytest_parity.run.diagnosed import diagnosis_of
from pytest_parity.run.given import built, flax_side
from pytest_parity.run.gradient_report import parting_lines
from pytest_parity.run.gradients import (
    GradientCheck,
    Losses,
    budget_wanted,
)
from pytest_parity.run.sides import (
    flax_module_in,
    placed_variables,
    run_flax,
    run_torch,
    torch_model_on,
)
from pytest_parity.strategies import Batch


@dataclass
class ParityTestResult:
    """What a `@parity_test` ran: both modules, the mapping, and the worst example."""

    torch_module: Any = field(repr=False)
    flax_module: Any = field(repr=False)
    flax_variables: Any = field(default=None, repr=False)
    mapping: Mapping | None = field(default=None, repr=False)
    examples: int = 0
    compilations: int = 0
    worst: Comparison | None = None
    worst_input: Batch | None = None
    worst_gradients: Comparison | None = None  # with grads=True: the worst example's
    shapes_seen: set[tuple[int, ...]] = field(default_factory=set)


class LayerCase:
    """Runs one case: builds both sides once, then checks each drawn example."""

    def __init__(self, torch_spec: Any, flax_spec: Any, device: str, dtype: str,
                 mapping: Mapping | None, hints: Sequence[tuple[str, str]],
                 extra_rules: Sequence[Rule], grads: bool = False, loss: Losses | None = None,
                 seed: int = 0) -> None:
        import flax.linen as nn
        import torch

        self.device, self.dtype = device, dtype
        self.torch_module = torch_model_on(
            built(torch_spec, lambda m: isinstance(m, torch.nn.Module)), device, dtype)
        self.flax_module = flax_side(flax_spec, nn.Module)
        self.mapping, self.hints, self.extra_rules = mapping, hints, extra_rules
        self.variables: Any = None
        self.apply: Any = None
        self.failing: tuple[Batch, Comparison] | None = None
        self.problem = ""  # why the last example's outputs could not be compared, if so
        self.reference: references.ReferenceSides | None = None  # for a budget verdict
        self.result = ParityTestResult(self.torch_module, self.flax_module, mapping=mapping)
        self.grads, self.loss, self.seed = grads, loss, seed
        self.gradient_check: GradientCheck | None = None
        self.failing_gradients: tuple[Batch, Comparison] | None = None

    def _prepare(self, batch: Batch) -> None:
        """On the first example: the mapping (traced on its shape), the variables, the jit."""
        import flax.linen as nn
        import jax
        import jax.numpy as jnp

        if not isinstance(self.flax_module, (nn.Module, NNXPort)):  # a function: no variables
            function = self.flax_module  # a fresh jit: its cache (compilations) is this case's
            self.apply = jax.jit(lambda x: function(x))
            if references.wanted(self.dtype) or self._gradient_budget():
                self.reference = references.reference_sides(
                    self.torch_module, None, None, self.device, self.dtype,
                    flax_function=function)
            self._prepare_gradients(lambda _variables, x: function(x), None)
            return
        self.flax_module = flax_module_in(self.flax_module, self.dtype)
        if self.mapping is None:
            example = jax.ShapeDtypeStruct(batch.flax.shape, jnp.dtype(self.dtype)
                                           if batch.flax.dtype.kind == "f" else batch.flax.dtype)
            self.mapping = automatic_mapping(self.torch_module, self.flax_module, example,
                                             hints=self.hints, extra_rules=self.extra_rules)
        arrays, _ = self.mapping.torch_to_canonical(
            {key: to_numpy(value) for key, value in self.torch_module.state_dict().items()})
        self.variables = placed_variables(self.mapping.canonical_to_flax(arrays), self.device,
                                          self.dtype)
        module = self.flax_module
        self.apply = jax.jit(lambda variables, x: module.apply(variables, x))
        self.result.flax_module, self.result.flax_variables = module, self.variables
        self.result.mapping = self.mapping
        if references.wanted(self.dtype) or self._gradient_budget():
            self.reference = references.reference_sides(self.torch_module, module,
                                                        self.variables, self.device, self.dtype)
        self._prepare_gradients(module.apply, self.variables)

    def _gradient_budget(self) -> bool:
        return self.grads and budget_wanted(self.dtype)

    def _prepare_gradients(self, apply: Any, variables: Any) -> None:
        if not self.grads:
            return
        reference = self.reference if self._gradient_budget() else None
        self.gradient_check = GradientCheck(
            torch_model=self.torch_module, flax_apply=apply, flax_variables=variables,
            mapping=self.mapping, device=self.device, dtype=self.dtype, loss=self.loss,
            seed=self.seed, reference=reference)

    def outputs(self, batch: Batch) -> tuple[Any, Any, tuple[Any, Any] | None]:
        """Both sides' outputs on one example, as numpy in torch's layout, and (Flax's,
        torch's) in the reference precision where the case is judged by its budget."""
        if self.apply is None:
            self._prepare(batch)
        torch_out = run_torch(self.torch_module, batch.torch, self.device, self.dtype)
        flax_out = run_flax(self.apply, batch.flax, self.device, self.dtype,
                            variables=self.variables, layout=batch.layout)
        reference = self.reference.outputs(batch.torch, batch.flax, batch.layout) \
            if self.reference is not None and references.wanted(self.dtype) else None
        return torch_out, flax_out, reference

    def _input_line(self, batch: Batch) -> str:
        """The drawn input, and the dtype both sides were given it in where that differs."""
        given = "" if batch.torch.dtype.kind != "f" or str(batch.torch.dtype) == self.dtype \
            else f", given to both sides as {self.dtype}"
        return f"  input: {batch!r}{given}"

    def check(self, batch: Batch, name: str) -> None:
        """One example: structure, shapes, dtypes, then values (raises AssertionError)."""
        __tracebackhide__ = True
        torch_out, flax_out, reference = self.outputs(batch)
        self.result.examples += 1
        try:
            comparison = compare(flax_out, torch_out, name=name, reference=reference)
        except StructureMismatch as structure:  # structures or shapes differ
            self.problem = structure.summary()
            raise AssertionError(f"{structure}\n{self._input_line(batch)}") from None
        wrong_dtypes = [f"{path or name}: torch {to_numpy(leaf).dtype}, Flax "
                        f"{to_numpy(leaves(flax_out)[path]).dtype}"
                        for path, leaf in leaves(torch_out).items()
                        if to_numpy(leaf).dtype != to_numpy(leaves(flax_out)[path]).dtype]
        self.result.shapes_seen.add(batch.torch.shape)
        worst = self.result.worst
        if worst is None or comparison.margin > worst.margin:
            self.result.worst, self.result.worst_input = comparison, batch
        if wrong_dtypes:
            self.problem = f"output dtypes differ: {'; '.join(wrong_dtypes)}"
            raise AssertionError(f"{PREFIX} {name}: output dtypes differ: "
                                 f"{'; '.join(wrong_dtypes)}\n{self._input_line(batch)}")
        if not comparison.passed:
            # the last one is hypothesis' shrunk example
            self.failing, self.failing_gradients = (batch, comparison), None
            raise AssertionError(f"{format_failure(comparison)}\n{self._input_line(batch)}")
        if self.gradient_check is not None:
            self._check_gradients(batch, name)

    def _check_gradients(self, batch: Batch, name: str) -> None:
        """Both sides' gradients on the example (after its outputs agreed)."""
        __tracebackhide__ = True
        assert self.gradient_check is not None
        comparison, branches = self.gradient_check.judged(batch.torch, batch.flax,
                                                          batch.layout, name=name)
        worst = self.result.worst_gradients
        if worst is None or comparison.margin > worst.margin:
            self.result.worst_gradients = comparison
        lines = branches.lines(self.dtype, REFERENCE_DTYPES.get(self.dtype, self.dtype),
                               comparison.passed)
        if not comparison.passed:
            self.failing, self.failing_gradients = None, (batch, comparison)
            raise AssertionError("\n".join([
                format_failure(comparison), *lines, *parting_lines(comparison, self.mapping),
                self._input_line(batch)]))
        if branches.set_apart:
            warnings.warn(ParityBranchWarning("\n".join([f"{comparison.name} passes", *lines,
                                                         self._input_line(batch)])),
                          stacklevel=2)

    def diagnosis(self, batch: Batch) -> Diagnosis | None:
        """The audits and the trace of one example (none for a Flax function: no weights)."""
        if self.variables is None:
            return None
        tolerance = {} if self.reference is None or not references.wanted(self.dtype) \
            else references.trace_tolerance(
            self.reference, run_torch(self.torch_module, batch.torch, self.device, self.dtype),
            batch.torch)  # judged by its budget: so are its modules
        return diagnosis_of(mapping=self.mapping, torch_model=self.torch_module,
                            flax_module=self.flax_module, flax_variables=self.variables,
                            inputs=batch.torch, flax_inputs=batch.flax, layout=batch.layout,
                            device=self.device, dtype=self.dtype, tolerance=tolerance)

    def compilations(self) -> int:
        cache_size = getattr(self.apply, "_cache_size", None)
        return int(cache_size()) if cache_size is not None else 0
