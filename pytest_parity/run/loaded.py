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
from pytest_parity.calls import outputs_both_return
from pytest_parity.checkpoint import Checkpoint
from pytest_parity.compare import Comparison, compared
from pytest_parity.decoders import Decoding
from pytest_parity.diagnose import Diagnosis
from pytest_parity.inputs import InputError
from pytest_parity.layouts import Layout
from pytest_parity.registry import Pair
from pytest_parity.run.decoding import DEFAULT_STEPS
from pytest_parity.run.decoding_check import DecodingResult, check_decoding
from pytest_parity.run.diagnosed import concluded
from pytest_parity.run.gradients import (
    GradientCheck,
    GradientResult,
    budget_wanted,
    checked_losses,
)
from pytest_parity.run.pair_diagnosis import diagnosed, with_training_settings
from pytest_parity.run.reference import (
    ReferenceSides,
    reference_sides,
    wanted,
)
from pytest_parity.run.sides import (
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
    # The Flax side's jitted decoding programs, by module and decoder: compiled once per pair.
    decoding_programs: dict[Any, Any] = field(default_factory=dict, repr=False)

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
            raise InputError(f"pair {self.name!r}, torch side: "
                             f"{error.message}") from None

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
                  record=comparison.to_record().with_fields(torch_only=self.torch_only,
                                                            pair=self.name))
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
        return with_training_settings(
            self, lambda: self._gradient_checks[key].check(
                inputs, flax_given, self.layout, name=name or self.name, rtol=rtol, atol=atol),
            inputs, flax_inputs)

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
        return with_training_settings(
            self, lambda: steps_parity(self, batches, optimizer=optimizer, steps=steps, loss=loss,
                                       training=training, flax_training=flax_training,
                                       seed=seed, rtol=rtol, atol=atol, name=name),
            every[0] if every else None, None)

    def assert_decoding_close(self, input_ids: Any, attention_mask: Any = None, *,
                              steps: int = DEFAULT_STEPS, decoding: Decoding | None = None,
                              rtol: float | None = None, atol: float | None = None,
                              name: str | None = None) -> DecodingResult:
        """Both sides decode `steps` tokens greedily from the same prompts, each with its own
        KV cache, and are compared at every step (pytest_parity.run.decoding): the logits
        (judged as `assert_close` judges outputs: the budget in bfloat16/float16), the chosen
        token (a tie, where the two choices are within the tolerance of each other, is
        reported and both go on from torch's), and at the end each layer's cache by torch
        key; and each side's cached steps against its own call over the whole sequence.

        Args:
            input_ids: the prompts, (batch, length) token ids, padded on the left.
            attention_mask: 0 on the padding (None: no padding).
            decoding: each side's decoder (pytest_parity.decoders); None: the pair's own, or
                transformers' conventions.

        Raises:
            AssertionError: the first divergent step, each failing step's figures, each
                side's cache consistency, and the diagnosis of that step.
            ParityError: prompts padded on the right, a pair that declares no decoding.
        """
        __tracebackhide__ = True
        return check_decoding(self, input_ids, attention_mask, steps=steps, decoding=decoding,
                              rtol=rtol, atol=atol, name=name)

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
        return diagnosed(self, inputs, flax_inputs, self.tolerance(rtol, atol), descend=descend,
                         every_module_alone=every_module_alone, training=training)


# An index part of a torch key ('layer1.0.bn1' -> 'layer1.*.bn1'); digits in a name stay.
_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)")
