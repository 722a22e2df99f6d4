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
from typing import Any

import pytest

from pytest_parity.compare import (
    problem_record,
    records,
)
from pytest_parity.errors import ParityError
from pytest_parity.mapping import Mapping, Rule
from pytest_parity.run.diagnosed import concluded, recorded
from pytest_parity.run.gradients import checked_losses
from pytest_parity.run.layer_case import LayerCase, ParityTestResult
from pytest_parity.strategies import Batch, inputs_for

RESULT_ARGUMENT = "result"


def parity_test(*, torch: Any, flax: Any, inputs: Any = None,
                devices: Sequence[str] | None = None, dtypes: Sequence[str] | None = None,
                rtol: Any = None, atol: Any = None, verdict: Any = None, max_examples: int = 20,
                mapping: Mapping | None = None, hints: Sequence[tuple[str, str]] = (),
                extra_rules: Sequence[Rule] = (), grads: bool = False, loss: Any = None
                ) -> Callable[[Callable[..., Any]], Any]:
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
        grads: also compare, on each example whose outputs agree, both sides' gradients of
            one loss with respect to the input and every parameter (pytest_parity.run.gradients;
            judged by their budget, in float32 too).
        loss: with grads, (torch_loss, flax_loss), each a function of its side's outputs;
            default: a random projection of the outputs drawn from --parity-seed.
    """
    losses = checked_losses(loss)
    marker_args = {key: value for key, value in
                   (("devices", devices), ("dtypes", dtypes), ("rtol", rtol), ("atol", atol),
                    ("verdict", verdict)) if value is not None}

    def decorate(test: Callable[..., Any]) -> Any:
        wanted = [p for p in inspect.signature(test).parameters.values()
                  if p.name != RESULT_ARGUMENT]
        passes_result = RESULT_ARGUMENT in inspect.signature(test).parameters
        own = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
               for name in ("parity_device", "parity_dtype", "parity_seed")
               if name not in {p.name for p in wanted}]

        @functools.wraps(test)
        def run(**fixtures: Any) -> Any:
            __tracebackhide__ = True
            try:
                result = check_parity(
                    torch=torch, flax=flax, inputs=inputs, device=fixtures["parity_device"],
                    dtype=fixtures["parity_dtype"], max_examples=max_examples, mapping=mapping,
                    hints=hints, extra_rules=extra_rules, name=test.__name__, grads=grads,
                    loss=losses, seed=fixtures["parity_seed"])
            except ParityError as error:  # models that cannot be paired, inputs that cannot
                records.emit(problem_record(test.__name__, error.message.strip()))
                # be drawn: a message, no traceback
                pytest.fail(str(error), pytrace=False)
            kept = {name: fixtures[name] for name in (p.name for p in wanted)}
            return test(**kept, result=result) if passes_result else test(**kept)

        run.__signature__ = inspect.Signature(own + wanted)  # type: ignore[attr-defined]
        return pytest.mark.parity(**marker_args)(run)

    return decorate


def check_parity(*, torch: Any, flax: Any, inputs: Any = None, device: str = "cpu",
                 dtype: str = "float32", max_examples: int = 20, mapping: Mapping | None = None,
                 hints: Sequence[tuple[str, str]] = (), extra_rules: Sequence[Rule] = (),
                 name: str = "parity", grads: bool = False, loss: Any = None, seed: int = 0
                 ) -> ParityTestResult:
    """What `@parity_test` runs for one case, callable on its own (a script, a benchmark).

    Raises:
        AssertionError: the report of the shrunk failing example.
    """
    __tracebackhide__ = True
    from hypothesis import HealthCheck, Phase, given, settings

    runner = LayerCase(torch, flax, device, dtype, mapping, hints, extra_rules, grads=grads,
                       loss=checked_losses(loss), seed=seed)
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
        if runner.failing_gradients is not None:  # its text says which and where
            records.emit(runner.failing_gradients[1].to_record().with_fields(
                kind="gradients", examples=runner.result.examples, name=f"{name}: gradients, "
                f"shrunk failing example of {runner.result.examples}"))
            raise
        if runner.failing is None:  # structures, shapes or dtypes differ
            if runner.problem:
                    records.emit(problem_record(f"{name}: shrunk failing example of "
                                            f"{runner.result.examples}", runner.problem))
            raise
        _diagnosed(failure, runner, name)
    result = runner.result
    result.compilations = runner.compilations()
    if result.worst is not None and result.worst_input is not None:
        record = result.worst.to_record().with_fields(
            name=f"{name}: worst of {result.examples} examples, "
                 f"{result.compilations} compilations",
            examples=result.examples, compilations=result.compilations)
        worst_input = result.worst_input
        concluded(result.worst, lambda: runner.diagnosis(worst_input), record)
    if result.worst_gradients is not None:
        records.emit(result.worst_gradients.to_record().with_fields(
            kind="gradients", examples=result.examples, name=f"{name}: gradients, worst of "
            f"{result.examples} examples"))
    return result


def _diagnosed(failure: AssertionError, runner: LayerCase, name: str) -> None:
    """Re-raise hypothesis' failure with the diagnosis of its shrunk example, and report it."""
    __tracebackhide__ = True
    assert runner.failing is not None
    batch, comparison = runner.failing
    record = comparison.to_record().with_fields(
        name=f"{name}: shrunk failing example of {runner.result.examples}",
        examples=runner.result.examples)
    lines = recorded(comparison, lambda: runner.diagnosis(batch), record)
    error = AssertionError("\n".join([str(failure), *lines]))
    error.__notes__ = list(getattr(failure, "__notes__", []))
    raise error from None
