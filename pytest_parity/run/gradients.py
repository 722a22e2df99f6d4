"""Gradient parity of one case: both sides' gradients of one loss, compared key by key.

What `LoadedPair.assert_grads_close` and `@parity_test(grads=True)` run. The loss is the
default projection of the outputs (pytest_parity.train.gradients) or the user's, one per
side. Gradients are judged by their error budget in float32 too: both sides also compute
them in float64 on the same weights and inputs (pytest_parity.compare.budget,
GRADIENT_BUDGET says why), unless the case's verdict is "fixed".

A failure names each parameter whose gradient differs (its torch key, its module, its Flax
variable) nearest the output first, and where the backward pass parts ways: every gradient
from there to the output agrees, so what differs runs between the two modules it names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_parity.branches import (
    Branches,
    Choice,
    Flip,
    TorchChoices,
    check_aligned,
    drifted_apart,
    flips_between,
)
from pytest_parity.compare import GRADIENT_BUDGET, Comparison, compared
from pytest_parity.errors import ParityError
from pytest_parity.layouts import Layout
from pytest_parity.mapping import Mapping
from pytest_parity.run.gradient_report import concluded_with_branches, parting_lines
from pytest_parity.run.reference import ReferenceSides, precision, rounded_inputs, wanted
from pytest_parity.run.sides import called, flax_input, torch_input
from pytest_parity.train import (
    LOW_PRECISION,
    FlaxGradients,
    Gradients,
    flax_projection_loss,
    flax_projections,
    mapped_parameters,
    projections,
    torch_gradients,
    torch_projection_loss,
)

# A user's loss: one function per side, each of that side's outputs (in its own layout).
Losses = tuple[Callable[[Any], Any], Callable[[Any], Any]]

# Both sides' choices (pytest_parity.branches), torch's then Flax's.
Seen = tuple[list[Choice], list[Choice]]
Pins = Seen


@dataclass(frozen=True)
class GradientResult:
    """What a gradient check compared: the verdict, and both sides' gradients (numpy,
    torch's layout and keys)."""

    comparison: Comparison
    torch: Gradients
    flax: Gradients


def budget_wanted(dtype: str) -> bool:
    """Whether the running case judges gradients in `dtype` by their budget (so both sides
    also compute them in the reference precision)."""
    return wanted(dtype, GRADIENT_BUDGET)


def checked_losses(loss: Any) -> Losses | None:
    """A user's `loss=`: None (the default projection) or (torch_loss, flax_loss).

    Raises:
        ParityError: anything else.
    """
    if loss is None:
        return None
    if isinstance(loss, Sequence) and len(loss) == 2 and all(map(callable, loss)):
        return (loss[0], loss[1])
    raise ParityError(f"loss= takes (torch_loss, flax_loss), a function of each "
                      f"side's outputs returning a scalar, or None (a random projection of "
                      f"the outputs); got {loss!r}")


class _Side:
    """One precision of both sides: the torch model and the Flax side's jitted gradients."""

    def __init__(self, torch_model: Any, flax_apply: Callable[..., Any], flax_variables: Any,
                 mapping: Mapping | None, losses: Losses | None) -> None:
        self.torch_model, self.mapping = torch_model, mapping
        self.flax_variables = {"params": {}} if flax_variables is None else flax_variables
        flax_loss = flax_projection_loss if losses is None else (
            lambda outputs, _weights: losses[1](outputs))
        self.flax = FlaxGradients(lambda variables, inputs: called(
            flax_apply, variables, inputs=inputs), flax_loss, mapping)

    def gradients(self, torch_loss: Callable[[Any], Any], weights: Any, inputs: Any,
                  flax_inputs: Any, layout: Layout, device: str, dtype: str,
                  pins: Pins | None = None) -> tuple[Gradients, Gradients, Seen]:
        """(Flax's, torch's) gradients on host inputs, placed in `dtype`; with `pins` (the
        reference's choices, torch's then Flax's), each side's backward taken through them,
        and the choices each made (else none)."""
        model = self.torch_model
        placed = torch_input(inputs, device, dtype)
        torch_seen = None if pins is None else TorchChoices(
            model, [choice.chosen for choice in pins[0]])

        def forward(given: Any) -> Any:  # the model's forward alone is seen, not the loss
            with contextlib.nullcontext() if torch_seen is None else torch_seen:
                return called(model, inputs=given)

        torch_side = torch_gradients(forward, mapped_parameters(model, self.mapping), placed,
                                     torch_loss)
        flax_placed = flax_input(flax_inputs, device, dtype)
        if pins is None:
            return (self.flax(self.flax_variables, flax_placed, weights(), layout,
                              _rank(inputs)), torch_side, ([], []))
        flax_side, flax_seen = self.flax.pinned(self.flax_variables, flax_placed, weights(),
                                                layout, _rank(inputs),
                                                [choice.chosen for choice in pins[1]])
        return flax_side, torch_side, ([] if torch_seen is None else torch_seen.choices,
                                       flax_seen)

    def choices(self, inputs: Any, flax_inputs: Any, device: str, dtype: str) -> Seen:
        """The choices of both sides' non-smooth ops in their forward, torch's then Flax's."""
        import torch

        model = self.torch_model
        with TorchChoices(model) as seen, torch.no_grad():
            called(model, inputs=torch_input(inputs, device, dtype))
        return seen.choices, self.flax.choices(self.flax_variables,
                                               flax_input(flax_inputs, device, dtype))


def _with_variables(reference: ReferenceSides) -> Callable[..., Any]:
    """The reference's Flax apply as (variables, inputs) -> outputs (a Flax function's takes
    the inputs alone)."""
    apply = reference.flax_apply
    return apply if reference.flax_variables is not None else (
        lambda _variables, inputs: apply(inputs))


def _rank(inputs: Any) -> int:
    return 0 if isinstance(inputs, dict) else int(np.ndim(inputs))


class GradientCheck:
    """The gradient check of one case (a pair on a device and dtype, or a layer's), its Flax
    gradients jitted once; `reference`: both sides in the reference precision, for the
    budget (built by the caller where `budget_wanted`)."""

    def __init__(self, *, torch_model: Any, flax_apply: Callable[..., Any],
                 flax_variables: Any, mapping: Mapping | None, device: str, dtype: str,
                 loss: Losses | None = None, seed: int = 0,
                 reference: ReferenceSides | None = None) -> None:
        self.device, self.dtype, self.seed, self.losses = device, dtype, seed, loss
        self.mapping = mapping
        self.side = _Side(torch_model, flax_apply, flax_variables, mapping, loss)
        self.reference = reference
        self.reference_side = None if reference is None else _Side(
            reference.torch_model, _with_variables(reference), reference.flax_variables,
            mapping, loss)

    def _losses(self, layout: Layout, rank: int
                ) -> tuple[Callable[[Any], Any], Callable[[], Any]]:
        """torch's loss and (a function giving) the Flax loss's weights: for the default loss
        the projections, drawn from torch's outputs on its first call."""
        from pytest_parity.devices import torch_device

        device = torch_device(self.device)
        if self.losses is not None:
            return self.losses[0], lambda: None
        drawn: dict[str, Any] = {}

        def torch_loss(outputs: Any) -> Any:
            if "projected" not in drawn:
                drawn["projected"] = projections(outputs, self.seed)
            return torch_projection_loss(drawn["projected"], device)(outputs)

        return torch_loss, lambda: flax_projections(drawn["projected"], layout, rank)

    def gradients(self, inputs: Any, flax_inputs: Any, layout: Layout
                  ) -> tuple[Gradients, Gradients, tuple[Any, Any] | None]:
        """(Flax's, torch's) gradients on host inputs (torch's layout; Flax's own), and in
        the reference precision where the budget judges them."""
        torch_loss, weights = self._losses(layout, _rank(inputs))
        flax_side, torch_side, _ = self.side.gradients(torch_loss, weights, inputs,
                                                       flax_inputs, layout, self.device,
                                                       self.dtype)
        return flax_side, torch_side, self._reference(torch_loss, weights, inputs,
                                                      flax_inputs, layout)

    def _reference(self, torch_loss: Callable[[Any], Any], weights: Callable[[], Any],
                   inputs: Any, flax_inputs: Any, layout: Layout) -> tuple[Any, Any] | None:
        if self.reference_side is None or self.reference is None:
            return None
        wide = self.reference.reference_dtype
        with precision(wide):
            flax_wide, torch_wide, _ = self.reference_side.gradients(
                torch_loss, weights, rounded_inputs(inputs, self.dtype),
                rounded_inputs(flax_inputs, self.dtype), layout, self.device, wide)
        # float32: the loss is a forward value, one element: held to the table (an rms of
        # one element's drift says nothing; measured: GELU's loss 1.2e-7 apart on both sides
        # where torch's float32 loss was 3e-9 from its float64 one, margin 3.4)
        return tuple(  # type: ignore[return-value]
            {key: value for key, value in wide.tree().items()
             if key != "loss" or self.dtype != "float32"}
            for wide in (flax_wide, torch_wide))

    def pinned(self, inputs: Any, flax_inputs: Any, layout: Layout
               ) -> tuple[Gradients, Gradients, list[Flip]] | str:
        """Both sides' gradients in the case's dtype with every non-smooth op's backward taken
        through the branch its reference-precision run took, and the elements whose branch
        that moved; or why the two runs' ops cannot be paired."""
        if self.reference_side is None or self.reference is None:
            return "the case has no reference precision to take the branches from"
        wide = self.reference.reference_dtype
        with precision(wide):
            pins = self.reference_side.choices(rounded_inputs(inputs, self.dtype),
                                               rounded_inputs(flax_inputs, self.dtype),
                                               self.device, wide)
        # XLA rounds one forward differently in two programs: what the first run's forward
        # chose is seen again in a forward alone, as well as in the pinned run
        forward = self.side.choices(inputs, flax_inputs, self.device, self.dtype)
        problem = check_aligned(forward[0], pins[0], "torch") or check_aligned(
            forward[1], pins[1], "the Flax side")
        if problem is not None:
            return problem
        torch_loss, weights = self._losses(layout, _rank(inputs))
        try:
            flax_side, torch_side, own = self.side.gradients(
                torch_loss, weights, inputs, flax_inputs, layout, self.device, self.dtype,
                pins)
        except ValueError as error:  # a forward whose ops change between runs
            return f"the run through the reference's branches failed: {error}"
        flips = {(flip.side, flip.order, flip.index): flip
                 for seen in (forward, own) for side, mine, theirs in (
                     ("torch", seen[0], pins[0]), ("Flax", seen[1], pins[1]))
                 for flip in flips_between(mine, theirs, side)}
        return flax_side, torch_side, list(flips.values())

    def judged(self, inputs: Any, flax_inputs: Any, layout: Layout, *, name: str,
               rtol: float | None = None, atol: float | None = None
               ) -> tuple[Comparison, Branches]:
        """Both sides' gradients compared (recorded only where they cannot be), and what the
        branches of their non-smooth ops showed where it failed at first."""
        comparison, _, _, branches = self._compared(inputs, flax_inputs, layout, name, rtol,
                                                    atol)
        return comparison, branches

    def _compared(self, inputs: Any, flax_inputs: Any, layout: Layout, name: str,
                  rtol: float | None, atol: float | None
                  ) -> tuple[Comparison, Gradients, Gradients, Branches]:
        """The comparison; where it fails, judged again through the reference's branches
        (pytest_parity.branches), which is the verdict where rounding flipped any."""
        flax_side, torch_side, reference = self.gradients(inputs, flax_inputs, layout)
        label = f"{name}: gradients"
        # In LOW_PRECISION dtypes gradients are held to both sides' drifts, not torch's alone:
        # XLA's backward rounds where torch's does not, whatever the port (a strided conv's
        # bias gradient summed in bfloat16: Flax drifts 10x torch's, margin 1.27 against it).
        comparison = compared(flax_side.tree(self.dtype),
                              torch_side.tree(self.dtype), name=label, rtol=rtol,
                              atol=atol, reference=reference, budget_by_default=GRADIENT_BUDGET,
                              both_sides=self.dtype in LOW_PRECISION)
        if reference is None or (comparison.passed
                                 and not drifted_apart(comparison, self.dtype, "gradients")):
            return comparison, flax_side, torch_side, Branches()
        pinned = self.pinned(inputs, flax_inputs, layout)
        if isinstance(pinned, str):
            return comparison, flax_side, torch_side, Branches(problem=pinned)
        flax_pinned, torch_pinned, flips = pinned
        if not flips:  # nothing moved: the first run's verdict stands
            return comparison, flax_side, torch_side, Branches(checked=True)
        return (compared(flax_pinned.tree(self.dtype),
                         torch_pinned.tree(self.dtype), name=label, rtol=rtol,
                         atol=atol, reference=reference, budget_by_default=GRADIENT_BUDGET,
                         both_sides=self.dtype in LOW_PRECISION),
                flax_pinned, torch_pinned, Branches(flips=flips, checked=True,
                                                    unpinned=comparison))

    def check(self, inputs: Any, flax_inputs: Any, layout: Layout, *, name: str,
              rtol: float | None = None, atol: float | None = None) -> GradientResult:
        """Compare both sides' gradients; record the comparison.

        Raises:
            AssertionError: the failure report, then which parameters differ and where the
                backward pass parts ways.
        """
        __tracebackhide__ = True
        comparison, flax_side, torch_side, branches = self._compared(
            inputs, flax_inputs, layout, name, rtol, atol)
        concluded_with_branches(comparison, branches, self.dtype, "gradients",
                                parting_lines(comparison, self.mapping))
        return GradientResult(comparison, torch_side, flax_side)
