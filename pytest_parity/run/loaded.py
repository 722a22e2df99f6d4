"""A registered pair loaded from its canonical checkpoint onto one device, in one dtype.

What `parity_pair("resnet50")` returns: the torch model (eval mode) and the Flax module, its
variables and its jitted apply, both on the case's device and in the case's dtype.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_parity import progress
from pytest_parity.arrays import to_numpy
from pytest_parity.calls import outputs_both_return
from pytest_parity.checkpoint.format import Checkpoint
from pytest_parity.compare import Comparison, compare, compared
from pytest_parity.diagnose import Diagnosis, mode
from pytest_parity.diagnose.findings import Finding
from pytest_parity.diagnose.weights import audit_weights, converter_finding
from pytest_parity.errors import PREFIX
from pytest_parity.inputs import InputError
from pytest_parity.layouts import Layout
from pytest_parity.registry import Pair
from pytest_parity.run.diagnosed import concluded, diagnosis_of
from pytest_parity.run.gradients import (
    GradientCheck,
    GradientResult,
    budget_wanted,
    checked_losses,
)
from pytest_parity.run.reference import (
    ReferenceSides,
    precision,
    reference_sides,
    rounded_inputs,
    trace_tolerance,
    wanted,
)
from pytest_parity.run.sides import (
    host_input,
    run_flax,
    run_torch,
)
from pytest_parity.run.steps import StepsResult, steps_parity


@dataclass(frozen=True)
class PairResult:
    """What `LoadedPair.assert_close` compared: the verdict, and both sides' outputs (numpy,
    torch's layout)."""

    comparison: Comparison
    torch: Any
    flax: Any


@dataclass
class LoadedPair:
    pair: Pair
    device: str
    dtype: str
    checkpoint: Checkpoint
    torch_model: Any
    flax_model: Any
    flax_variables: Any
    flax_apply: Callable[..., Any]  # jitted module.apply(variables, inputs)
    ready_seconds: dict[str, float] = field(default_factory=dict)  # by step: see load_pair
    # The Flax variables are the user's own (pair_of(..., variables=)), not the mapping's
    # conversion of the checkpoint: the weight audit then judges their converter.
    variables_given: bool = False
    _gradient_checks: dict[Any, GradientCheck] = field(default_factory=dict, repr=False)
    _shapes_compiled: set[Any] = field(default_factory=set, repr=False)

    @property
    def name(self) -> str:
        return self.pair.name

    @property
    def layout(self) -> Layout:
        """How outputs come back to torch's layout: an image pair's feature maps move; named
        inputs keep every output as it is."""
        return Layout.SAME if self.pair.named_inputs else self.pair.input_layout

    def example_inputs(self, seed: int = 0) -> Any:
        """An example batch of the pair's declared inputs (torch's layout), drawn from `seed`."""
        return self.pair.example_inputs(seed)

    def torch_forward(self, inputs: Any) -> Any:
        """The torch model's output on a torch-layout (e.g. NCHW) batch, or on named inputs
        (a dict of arrays), as numpy."""
        self.pair.check_inputs(inputs)
        try:
            return run_torch(self.torch_model, inputs, self.device, self.dtype)
        except InputError as error:
            raise InputError(f"{PREFIX} pair {self.name!r}, torch side: "
                             f"{str(error).removeprefix(PREFIX + ' ')}") from None

    def flax_forward(self, inputs: Any) -> Any:
        """The Flax model's output on the same torch-layout batch (given to Flax in its own
        layout, e.g. NHWC), as numpy in torch's layout."""
        self.pair.check_inputs(inputs)
        return self._run_flax(self.pair.to_flax(inputs))

    def _run_flax(self, flax_inputs: Any) -> Any:
        """run_flax on the jitted apply; its first call on a new input shape compiles (seconds
        for a large model), which is announced where it takes long."""
        shapes = (tuple(sorted((name, np.shape(value)) for name, value in flax_inputs.items()))
                  if isinstance(flax_inputs, dict) else np.shape(flax_inputs))
        waited = (progress.timed(f"{self.name}: first Flax call on {shapes} in {self.dtype}, "
                                 "compiled") if shapes not in self._shapes_compiled
                  else contextlib.nullcontext())
        self._shapes_compiled.add(shapes)
        with waited:
            return run_flax(self.flax_apply, flax_inputs, self.device, self.dtype,
                            variables=self.flax_variables, layout=self.layout)

    def _compared_outputs(self, flax_out: Any, torch_out: Any) -> tuple[Any, Any]:
        """The outputs as the pair compares them (pytest_parity.calls.outputs_both_return)."""
        return outputs_both_return(flax_out, torch_out, self.pair.outputs, f"pair {self.name!r}")

    def tolerance(self, rtol: float | None = None, atol: float | None = None
                  ) -> dict[str, float]:
        """The pair's tolerance for this dtype, with rtol/atol where given."""
        given = {key: value for key, value in (("rtol", rtol), ("atol", atol))
                 if value is not None}
        return {**self.pair.tolerance(self.dtype), **given}

    def _flax_given(self, inputs: Any, flax_inputs: Any) -> Any:
        """What the Flax side is given: its own inputs, else `inputs` in its layout."""
        self.pair.check_inputs(inputs)
        if flax_inputs is None:
            return self.pair.to_flax(inputs)
        self.pair.check_inputs(flax_inputs)
        if isinstance(flax_inputs, dict):
            return {name: np.asarray(value) for name, value in flax_inputs.items()}
        return np.asarray(flax_inputs)

    def assert_close(self, inputs: Any, *, flax_inputs: Any = None, rtol: float | None = None,
                     atol: float | None = None, mask: Any = None,
                     name: str | None = None) -> PairResult:
        """Run both sides on `inputs` (torch's layout, or named inputs as a dict; Flax gets
        them in its own layout, or `flax_inputs` where its input pipeline is its own) and
        assert their outputs are close under the pair's tolerance, counting only the elements
        `mask` keeps (an array, a tree of masks matching the outputs, or a function of the
        leaf's path; see pytest_parity.compare). A bfloat16/float16 case is judged by its
        error budget: both sides run again in float32 on the same rounded weights and inputs
        (pytest_parity.compare.budget). Where the pair declares an attention mask,
        an unmasked failure whose worst element is padding says so. A failure is diagnosed
        (`--parity-trace`): the weight and settings audits, and the first divergent module.

        Raises:
            AssertionError: the failure report, then where it goes wrong.
            InputError: named inputs that do not fit what the pair declares.
        """
        __tracebackhide__ = True
        flax_given = self._flax_given(inputs, flax_inputs)
        flax_out, torch_out = self._compared_outputs(self._run_flax(flax_given),
                                                     self.torch_forward(inputs))
        reference = self._compared_outputs(*self.reference.outputs(
            inputs, flax_given, self.layout)) if wanted(self.dtype) else None
        comparison = compared(flax_out, torch_out, name=name or self.name, mask=mask,
                              padding=self.pair.padding(inputs), reference=reference,
                              **self.tolerance(rtol, atol))
        concluded(comparison, lambda: self.diagnose(inputs, flax_inputs=flax_inputs,
                                                    rtol=rtol, atol=atol),
                  record={**comparison.to_record(), "torch_only": self.torch_only})
        return PairResult(comparison, torch_out, flax_out)

    def assert_grads_close(self, inputs: Any, *, flax_inputs: Any = None, loss: Any = None,
                           seed: int = 0, rtol: float | None = None, atol: float | None = None,
                           name: str | None = None) -> GradientResult:
        """Both sides' gradients of one loss on `inputs` (as `assert_close` takes them), with
        respect to the floating inputs and every parameter, compared key by key (torch's keys:
        the Flax side's are carried back through the pair's mapping). `loss`: None, a random
        projection of the outputs drawn from `seed` (every output element counts), or
        (torch_loss, flax_loss), each a function of its side's outputs returning a scalar.
        Judged by the gradients' error budget (both sides also in float64 for a float32 pair;
        pytest_parity.run.gradients), or by rtol/atol where given.

        Raises:
            AssertionError: the failure report, the parameters whose gradients differ and
                where the backward pass parts ways.
        """
        __tracebackhide__ = True
        flax_given = self._flax_given(inputs, flax_inputs)
        losses = checked_losses(loss)
        key = (id(losses[0]), id(losses[1])) if losses else None, seed
        if key not in self._gradient_checks:
            self._gradient_checks[key] = GradientCheck(
                torch_model=self.torch_model, flax_apply=self.flax_model.apply,
                flax_variables=self.flax_variables, mapping=self.pair.mapping,
                device=self.device, dtype=self.dtype, loss=losses, seed=seed,
                reference=self.reference if budget_wanted(self.dtype) else None)
        return self._with_training_settings(
            lambda: self._gradient_checks[key].check(inputs, flax_given, self.layout,
                                                     name=name or self.name, rtol=rtol,
                                                     atol=atol), inputs, flax_inputs)

    def assert_steps_close(self, batches: Any, *, optimizer: Any, steps: int | None = None,
                           loss: Any = None, training: bool = True,
                           flax_training: dict[str, Any] | None = None, seed: int = 0,
                           rtol: float | None = None, atol: float | None = None,
                           name: str | None = None) -> StepsResult:
        """Train copies of both sides for N steps from this pair's weights on the same
        batches, and compare the loss of every step and, after the last, the parameters, the
        running statistics and the optimizer's state, key by key (the pair's own models stay
        as they are). Judged by the budget, as gradients are (pytest_parity.run.steps).

        Args:
            batches: one batch per step (a list, as `assert_close` takes inputs), or one batch
                for every step.
            optimizer: a factory of torch's optimizer (`lambda ps: torch.optim.AdamW(ps,
                lr=1e-3)`): its optax equivalent is drawn from pytest_parity.train.optimizers;
                or (torch_factory, optax_transformation) for your own.
            steps: with one batch, how many steps (default 3).
            loss: as `assert_grads_close`'s.
            training: torch's train() (dropout layers stay in eval mode) and Flax's
                `flax_training` keyword arguments (default {"train": True}), its non-parameter
                collections mutable (BatchNorm's running statistics).

        Raises:
            AssertionError: the failure report, each step's losses, the parameters that
                differ.
            ParityError: an optimizer without an optax equivalent.
        """
        __tracebackhide__ = True
        every = list(batches) if isinstance(batches, (list, tuple)) else [batches]
        for batch in every:
            self.pair.check_inputs(batch)
        return self._with_training_settings(
            lambda: steps_parity(self, batches, optimizer=optimizer, steps=steps, loss=loss,
                                 training=training, flax_training=flax_training, seed=seed,
                                 rtol=rtol, atol=atol, name=name),
            every[0] if every else None, None)

    def _with_training_settings(self, check: Callable[[], Any], inputs: Any,
                                flax_inputs: Any) -> Any:
        """Run a gradient or steps check; where it fails (and `--parity-trace` wants), its
        failure text ends with the settings audit, the settings that change training only
        included (BatchNorm momentum, padding_idx, dropout): a forward diagnosis leaves them
        out, since they cannot explain a forward difference."""
        __tracebackhide__ = True
        try:
            return check()
        except AssertionError as failure:
            if not mode.wanted(False) or inputs is None:
                raise
            try:
                settings = self.diagnose(inputs, flax_inputs=flax_inputs, descend=False,
                                         training=True).settings
            except Exception as error:  # the failure stands; the audit says it could not run
                lines = [f"{PREFIX} no settings audit: it failed with "
                         f"{type(error).__name__}: {error}"]
            else:
                lines = [f"{PREFIX} settings audit (training included): "
                         f"{len(settings) or 'nothing'} differ{'s' if len(settings) == 1 else ''}",
                         *(f"  {finding.line()}" for finding in settings)]
            raise AssertionError("\n".join([str(failure), *lines])) from None

    @functools.cached_property
    def reference(self) -> ReferenceSides:
        """Both sides in the reference precision (float32 for a bfloat16/float16 pair) on
        this pair's rounded weights, for its budget verdict; built on first use, kept."""
        return reference_sides(self.torch_model, self.flax_model, self.flax_variables,
                               self.device, self.dtype)

    @functools.cached_property
    def torch_only(self) -> list[str]:
        """The torch tensors no Flax variable holds (rules without a Flax collection: buffers
        such as BatchNorm's `num_batches_tracked`, layers a mapping declares torch-only), as
        sorted patterns with each index as '*' ('layer1.*.bn1.num_batches_tracked'): listed
        in each comparison's record, since the comparison cannot cover them."""
        mapping = self.pair.mapping
        return sorted({_INDEX.sub("*", key) for key in self.torch_model.state_dict()
                       if (rule := mapping.rule_for(key, "torch")) is not None
                       and rule.collection is None})

    def diagnose(self, inputs: Any, *, flax_inputs: Any = None, rtol: float | None = None,
                 atol: float | None = None, descend: bool | None = None,
                 every_module_alone: bool = False, training: bool = False) -> Diagnosis:
        """The weight and settings audits and the activation trace of one input (as
        `assert_close` takes it; in a case judged by its budget, each module is held to the
        budget's element bound on this input); `descend=True` searches for a culprit even
        where the outputs agree; `every_module_alone` runs each module on torch's inputs (to
        measure noise); `training` also reports the settings that change training only."""
        layout, tolerance = self.layout, self.tolerance(rtol, atol)
        flax_given = self._flax_given(inputs, flax_inputs)
        if self.dtype in WIDENED_TRACE:
            widened = self._diagnosis_widened(inputs, flax_given, flax_inputs is not None,
                                              descend, every_module_alone, training)
            if widened is not None and widened.found:
                return widened
        if wanted(self.dtype) and not tolerance:  # judged by its budget: so are its modules
            tolerance = trace_tolerance(self.reference, self.torch_forward(inputs), inputs)
        inputs_differ = flax_inputs is not None and not _agree(
            _host(flax_given, self.dtype, layout, inputs), _host(inputs, self.dtype), tolerance)
        diagnosis = diagnosis_of(
            mapping=self.pair.mapping, torch_model=self.torch_model, flax_module=self.flax_model,
            flax_variables=self.flax_variables, inputs=inputs, flax_inputs=flax_given,
            layout=layout, device=self.device, dtype=self.dtype, tolerance=tolerance,
            inputs_differ=inputs_differ, descend=descend,
            every_module_alone=every_module_alone, training=training)
        if self.variables_given and diagnosis.weights:
            diagnosis.weights.insert(0, converter_finding(diagnosis.weights, self.pair.mapping))
        return diagnosis

    def _weights_audit(self) -> list[Finding]:
        """The weight audit of this pair's own variables, in its dtype."""
        import jax

        torch_state = {key: to_numpy(value) for key, value in
                       self.torch_model.state_dict().items()}
        return audit_weights(self.pair.mapping, torch_state,
                             jax.tree_util.tree_map(np.asarray, self.flax_variables))

    def _diagnosis_widened(self, inputs: Any, flax_given: Any, own_flax_inputs: bool,
                           descend: bool | None, every_module_alone: bool, training: bool
                           ) -> Diagnosis | None:
        """The diagnosis of a low-precision case run on its reference sides: the same weights
        and inputs, as the case's dtype rounded them, computed in float32 and held to the
        pair's float32 tolerance. In bfloat16 each module's own rounding is as large as many
        bugs' effect: the trace there said "none" for detected untransposed kernels and shifted
        position embeddings. None for a Flax side without a module."""
        sides = self.reference
        if sides.flax_module is None:
            return None
        wide, layout = sides.reference_dtype, self.layout
        tolerance = self.pair.tolerance(wide)
        torch_given = rounded_inputs(inputs, self.dtype)
        flax_rounded = rounded_inputs(flax_given, self.dtype)
        inputs_differ = own_flax_inputs and not _agree(
            _host(flax_rounded, wide, layout, torch_given), _host(torch_given, wide), tolerance)
        with precision(wide):
            diagnosis = diagnosis_of(
                mapping=self.pair.mapping, torch_model=sides.torch_model,
                flax_module=sides.flax_module, flax_variables=sides.flax_variables,
                inputs=torch_given, flax_inputs=flax_rounded, layout=layout,
                device=self.device, dtype=wide, tolerance=tolerance,
                inputs_differ=inputs_differ, descend=descend,
                every_module_alone=every_module_alone, training=training)
        diagnosis.trace.traced_in = f"{wide}, on the {self.dtype}-rounded weights and inputs"
        if diagnosis.weights:  # named as the case holds them, in its dtype (the same values)
            diagnosis.weights = self._weights_audit()
        if self.variables_given and diagnosis.weights:
            diagnosis.weights.insert(0, converter_finding(diagnosis.weights, self.pair.mapping))
        return diagnosis


# Cases whose failure is traced in their reference dtype first (_diagnosis_widened).
WIDENED_TRACE = ("bfloat16", "float16")

# An index part of a torch key ('layer1.0.bn1' -> 'layer1.*.bn1'); digits in a name stay.
_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)")


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
