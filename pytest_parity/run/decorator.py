"""`@parity_test`: a torch module and its Flax counterpart, checked on hypothesis-drawn inputs.

    from pytest_parity import parity_test
    from pytest_parity.strategies import image_batches

    @parity_test(torch=lambda: torch.nn.Conv2d(3, 8, 3, padding=1),
                 flax=lambda: nn.Conv(8, (3, 3), padding=1),
                 inputs=image_batches(channels=3), dtypes=["float32", "bfloat16"])
    def test_conv(result):
        assert result.examples >= 10

The decorated test runs once per device and dtype of the run and of `devices`/`dtypes` (the
`parity` marker), builds both modules (torch's weights from its own initialisation, seeded by
`--parity-seed`), copies the weights torch -> Flax through an automatic mapping (or `mapping=`),
and for each drawn input runs both and compares output structure, shapes, dtypes and values.
A failure is the `assert_close` report plus the shrunk input hypothesis found. The test body
gets the `ParityTestResult` as `result`, after every example passed.

`flax` may be a Linen module, an NNX module (`lambda: nnx.Conv(3, 8, (3, 3), rngs=nnx.Rngs(0))`:
built abstractly, its weights copied from torch like a Linen module's), or a plain function of
the input (pooling, activations): it has no variables.
An image batch reaches torch as NCHW and Flax as NHWC; a 4-d Flax output is compared as NCHW.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_parity.arrays import to_numpy
from pytest_parity.compare import (
    Comparison,
    StructureMismatch,
    compare,
    format_failure,
    problem_record,
    records,
)
from pytest_parity.compare.trees import leaves
from pytest_parity.diagnose import Diagnosis
from pytest_parity.errors import PREFIX, ParityError
from pytest_parity.mapping import Mapping, Rule, automatic_mapping
from pytest_parity.nnx_bridge import NNXPort
from pytest_parity.run import reference as references
from pytest_parity.run.diagnosed import concluded, diagnosis_of, recorded
from pytest_parity.run.given import built, flax_side
from pytest_parity.run.sides import (
    flax_module_in,
    placed_variables,
    run_flax,
    run_torch,
    torch_model_on,
)
from pytest_parity.strategies import Batch, inputs_for

RESULT_ARGUMENT = "result"


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
    shapes_seen: set[tuple[int, ...]] = field(default_factory=set)


class _Runner:
    """Runs one case: builds both sides once, then checks each drawn example."""

    def __init__(self, torch_spec: Any, flax_spec: Any, device: str, dtype: str,
                 mapping: Mapping | None, hints: Sequence[tuple[str, str]],
                 extra_rules: Sequence[Rule]) -> None:
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

    def _prepare(self, batch: Batch) -> None:
        """On the first example: the mapping (traced on its shape), the variables, the jit."""
        import flax.linen as nn
        import jax
        import jax.numpy as jnp

        if not isinstance(self.flax_module, (nn.Module, NNXPort)):  # a function: no variables
            function = self.flax_module  # a fresh jit: its cache (compilations) is this case's
            self.apply = jax.jit(lambda x: function(x))
            if references.wanted(self.dtype):
                self.reference = references.reference_sides(
                    self.torch_module, None, None, self.device, self.dtype,
                    flax_function=function)
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
        if references.wanted(self.dtype):
            self.reference = references.reference_sides(self.torch_module, module,
                                                        self.variables, self.device, self.dtype)

    def outputs(self, batch: Batch) -> tuple[Any, Any, tuple[Any, Any] | None]:
        """Both sides' outputs on one example, as numpy in torch's layout, and (Flax's,
        torch's) in the reference precision where the case is judged by its budget."""
        if self.apply is None:
            self._prepare(batch)
        torch_out = run_torch(self.torch_module, batch.torch, self.device, self.dtype)
        flax_out = run_flax(self.apply, batch.flax, self.device, self.dtype,
                            variables=self.variables, layout=batch.layout)
        reference = None if self.reference is None else self.reference.outputs(
            batch.torch, batch.flax, batch.layout)
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
            self.failing = (batch, comparison)  # the last one is hypothesis' shrunk example
            raise AssertionError(f"{format_failure(comparison)}\n{self._input_line(batch)}")

    def diagnosis(self, batch: Batch) -> Diagnosis | None:
        """The audits and the trace of one example (none for a Flax function: no weights)."""
        if self.variables is None:
            return None
        tolerance = {} if self.reference is None else references.trace_tolerance(
            self.reference, run_torch(self.torch_module, batch.torch, self.device, self.dtype),
            batch.torch)  # judged by its budget: so are its modules
        return diagnosis_of(mapping=self.mapping, torch_model=self.torch_module,
                            flax_module=self.flax_module, flax_variables=self.variables,
                            inputs=batch.torch, flax_inputs=batch.flax, layout=batch.layout,
                            device=self.device, dtype=self.dtype, tolerance=tolerance)

    def compilations(self) -> int:
        cache_size = getattr(self.apply, "_cache_size", None)
        return int(cache_size()) if cache_size is not None else 0


def parity_test(*, torch: Any, flax: Any, inputs: Any = None,
                devices: Sequence[str] | None = None, dtypes: Sequence[str] | None = None,
                rtol: Any = None, atol: Any = None, verdict: Any = None, max_examples: int = 20,
                mapping: Mapping | None = None, hints: Sequence[tuple[str, str]] = (),
                extra_rules: Sequence[Rule] = ()) -> Callable[[Callable[..., Any]], Any]:
    """Turn a test function into a parity test of `torch` against `flax` (see the module doc).

    Args:
        torch: a torch.nn.Module, or a zero-argument factory of one.
        flax: a flax.linen Module or a factory of one, or a plain function of the input.
        inputs: a strategy of `Batch`es (pytest_parity.strategies); default: shaped by the
            torch module's configuration (`inputs_for`).
        devices, dtypes, rtol, atol, verdict: as the `parity` marker's (a bfloat16/float16
            case is judged by its error budget unless verdict="fixed").
        max_examples: hypothesis examples per case.
        mapping: the weight mapping; default: automatic (`hints`, `extra_rules` as there).
    """
    marker_args = {key: value for key, value in
                   (("devices", devices), ("dtypes", dtypes), ("rtol", rtol), ("atol", atol),
                    ("verdict", verdict)) if value is not None}

    def decorate(test: Callable[..., Any]) -> Any:
        wanted = [p for p in inspect.signature(test).parameters.values()
                  if p.name != RESULT_ARGUMENT]
        passes_result = RESULT_ARGUMENT in inspect.signature(test).parameters
        own = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
               for name in ("parity_device", "parity_dtype")
               if name not in {p.name for p in wanted}]

        @functools.wraps(test)
        def run(**fixtures: Any) -> Any:
            __tracebackhide__ = True
            try:
                result = check_parity(
                    torch=torch, flax=flax, inputs=inputs, device=fixtures["parity_device"],
                    dtype=fixtures["parity_dtype"], max_examples=max_examples, mapping=mapping,
                    hints=hints, extra_rules=extra_rules, name=test.__name__)
            except ParityError as error:  # models that cannot be paired, inputs that cannot
                records.emit(problem_record(test.__name__, str(error).removeprefix(PREFIX)
                                            .strip()))  # be drawn: a message, no traceback
                pytest.fail(str(error), pytrace=False)
            kept = {name: fixtures[name] for name in (p.name for p in wanted)}
            return test(**kept, result=result) if passes_result else test(**kept)

        run.__signature__ = inspect.Signature(own + wanted)  # type: ignore[attr-defined]
        return pytest.mark.parity(**marker_args)(run)

    return decorate


def check_parity(*, torch: Any, flax: Any, inputs: Any = None, device: str = "cpu",
                 dtype: str = "float32", max_examples: int = 20, mapping: Mapping | None = None,
                 hints: Sequence[tuple[str, str]] = (), extra_rules: Sequence[Rule] = (),
                 name: str = "parity") -> ParityTestResult:
    """What `@parity_test` runs for one case, callable on its own (a script, a benchmark).

    Raises:
        AssertionError: the report of the shrunk failing example.
    """
    __tracebackhide__ = True
    from hypothesis import HealthCheck, Phase, given, settings

    runner = _Runner(torch, flax, device, dtype, mapping, hints, extra_rules)
    strategy = inputs if inputs is not None else inputs_for(runner.torch_module)

    # derandomized: the same examples on every run and machine; no "explain" phase (its
    # coverage notes about this plugin's own lines would only clutter the report).
    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate, Phase.shrink])
    @given(batch=strategy)
    def examples(batch: Batch) -> None:
        __tracebackhide__ = True
        runner.check(batch, name)

    try:
        examples()
    except AssertionError as failure:
        if runner.failing is None:  # structures, shapes or dtypes differ
            if runner.problem:
                    records.emit(problem_record(f"{name}: shrunk failing example of "
                                            f"{runner.result.examples}", runner.problem))
            raise
        _diagnosed(failure, runner, name)
    result = runner.result
    result.compilations = runner.compilations()
    if result.worst is not None and result.worst_input is not None:
        record = result.worst.to_record()
        record.update(name=f"{name}: worst of {result.examples} examples, "
                           f"{result.compilations} compilations",
                      examples=result.examples, compilations=result.compilations)
        worst_input = result.worst_input
        concluded(result.worst, lambda: runner.diagnosis(worst_input), record)
    return result


def _diagnosed(failure: AssertionError, runner: _Runner, name: str) -> None:
    """Re-raise hypothesis' failure with the diagnosis of its shrunk example, and report it."""
    __tracebackhide__ = True
    assert runner.failing is not None
    batch, comparison = runner.failing
    record = comparison.to_record()
    record.update(name=f"{name}: shrunk failing example of {runner.result.examples}",
                  examples=runner.result.examples)
    lines = recorded(comparison, lambda: runner.diagnosis(batch), record)
    error = AssertionError("\n".join([str(failure), *lines]))
    error.__notes__ = list(getattr(failure, "__notes__", []))
    raise error from None
