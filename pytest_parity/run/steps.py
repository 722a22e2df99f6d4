"""Training-step parity of a pair: N optimizer steps on both sides from the same weights and
batches, compared after the last: the loss of every step, the parameters, the running
statistics (BatchNorm in training mode) and the optimizer's state, key by key.

The torch optimizer is the user's (a factory of the parameters); the optax one is its
equivalent from pytest_parity.train.optimizers, or the user's own where given. As gradients,
the steps are judged by their budget: both sides train again in float64 on the same weights
and batches, and the cross error must stay within what torch's own rounding does over the
same steps (Adam divides by the root of the squared gradients, so an element whose gradient
is rounding noise moves by up to the learning rate in either framework).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_parity.branches import Branches, drifted_apart
from pytest_parity.compare import GRADIENT_BUDGET, REFERENCE_DTYPES, Comparison, compared
from pytest_parity.errors import PREFIX, ParityError
from pytest_parity.run.gradient_report import concluded_with_branches, parting_lines
from pytest_parity.run.gradients import (
    Losses,
    budget_wanted,
    checked_losses,
)
from pytest_parity.run.reference import precision, rounded_inputs
from pytest_parity.run.sides import (
    called,
    flax_input,
    flax_module_in,
    placed_variables,
    torch_input,
    torch_model_on,
)
from pytest_parity.run.steps_report import first_parting_lines, listed, steps_flips
from pytest_parity.train import (
    Trained,
    flax_projection_loss,
    flax_projections,
    flax_steps,
    mapped_parameters,
    optax_equivalent,
    projections,
    state_fields,
    torch_projection_loss,
    torch_steps,
    training_mode,
)

# The Linen convention of Flax's examples: `__call__(x, train: bool)`.
FLAX_TRAINING = {"train": True}


@dataclass(frozen=True)
class StepsResult:
    """What a steps check compared, and what each side ended with (numpy, torch's keys)."""

    comparison: Comparison
    torch: Trained
    flax: Trained


def batches_of(batches: Any, steps: int | None) -> list[Any]:
    """One batch per step: a list of batches, or one batch repeated `steps` times.

    Raises:
        ParityError: no step to take, or a number of steps the batches do not give.
    """
    if steps is not None and (type(steps) is not int or steps < 1):
        raise ParityError(f"steps={steps!r}: a whole number of steps, 1 or more")
    if isinstance(batches, (list, tuple)) and not batches:
        raise ParityError("no batches were given: one per step, or one for all")
    if isinstance(batches, (list, tuple)):
        if steps is not None and steps != len(batches):
            raise ParityError(f"steps={steps} but {len(batches)} batches were given: "
                              "give one batch per step, or one batch and steps=")
        return list(batches)
    return [batches] * (3 if steps is None else steps)


@dataclass(frozen=True)
class _Plan:
    """What both precisions of one steps check share."""

    optimizer: Callable[[Any], Any]
    tx: Any  # the user's optax transformation, or None: torch's equivalent
    losses: Losses | None
    seed: int
    training: bool
    flax_training: Mapping[str, Any]


def _optimizers(plan: _Plan, model: Any) -> tuple[Any, Any, dict[str, str]]:
    optimizer = plan.optimizer(model.parameters())
    tx = plan.tx if plan.tx is not None else optax_equivalent(optimizer)
    return optimizer, tx, state_fields(optimizer)


def _train(plan: _Plan, pair: Any, torch_model: Any, flax_module: Any, variables: Any,
           batches: list[Any], flax_batches: list[Any], dtype: str,
           drawn: dict[str, Any], watch: bool = False,
           pins: tuple[Any, Any] | None = None) -> tuple[Trained, Trained]:
    """Both sides' steps in `dtype`, from copies of the given models (left as they are);
    `watch`, `pins` (torch's, then Flax's): as pytest_parity.train.torch_steps takes them."""
    mapping, device = pair.pair.mapping, pair.device
    model = torch_model_on(copy.deepcopy(torch_model), device, dtype)
    if plan.training:
        training_mode(model)
    optimizer, tx, fields = _optimizers(plan, model)
    rank = 0 if isinstance(batches[0], dict) else len(batches[0].shape)
    if plan.losses is not None:
        own = plan.losses
        torch_loss, flax_loss, weights = own[0], (lambda outputs, _: own[1](outputs)), None
    else:
        def torch_loss(outputs: Any) -> Any:
            if "projected" not in drawn:
                drawn["projected"] = projections(outputs, plan.seed)
            return torch_projection_loss(drawn["projected"], outputs_device(outputs))(outputs)

        flax_loss, weights = flax_projection_loss, None
    buffer_keys = [key for key, _ in model.named_buffers()
                   if (rule := mapping.rule_for(key, "torch")) is not None
                   and rule.collection not in (None, "params")]
    torch_side = torch_steps(model, optimizer, lambda given: called(model, inputs=given),
                             [torch_input(batch, device, dtype) for batch in batches],
                             torch_loss, list(mapped_parameters(model, mapping)), buffer_keys,
                             list(fields), watch=watch, pins=None if pins is None else pins[0])
    if plan.losses is None:
        weights = flax_projections(drawn["projected"], pair.layout, rank)
    module = flax_module_in(flax_module, dtype)
    variables = placed_variables(variables, device, dtype)
    mutable = [name for name in variables if name != "params"] if plan.training else []
    apply = functools.partial(module.apply, mutable=mutable or False, **(
        plan.flax_training if plan.training else {}))

    def training_apply(variables: Any, inputs: Any) -> Any:
        found = called(apply, variables, inputs=inputs)
        return found if mutable else (found, {})

    with _named_training(flax_module, plan.flax_training):
        flax_side = flax_steps(training_apply, variables, tx,
                               [flax_input(batch, device, dtype) for batch in flax_batches],
                               flax_loss, weights, mapping, fields, watch=watch,
                               pins=None if pins is None else pins[1])
    return flax_side, torch_side


def _call_of(flax_module: Any) -> Any:
    """The Flax module's __call__ (an NNX port's: its module's)."""
    return getattr(flax_module, "module", flax_module).__call__


def training_arguments(flax_module: Any, given: Mapping[str, Any] | None, variables: Any
                       ) -> Mapping[str, Any]:
    """The keyword arguments that put the Flax side in training mode: `given`, or {"train":
    True} where its __call__ takes `train`, or none where it has nothing a training mode
    changes (only `params`).

    Raises:
        ParityError: a module with other collections (BatchNorm's statistics) whose __call__
            takes no `train`: which argument it takes is the user's to say.
    """
    if given is not None:
        return given
    parameters = inspect.signature(_call_of(flax_module)).parameters.values()
    if any(parameter.name == "train" or parameter.kind is inspect.Parameter.VAR_KEYWORD
           for parameter in parameters):
        return FLAX_TRAINING
    others = sorted(name for name in variables if name != "params")
    if not others:
        return {}
    name = type(getattr(flax_module, "module", flax_module)).__name__
    raise ParityError(f"{name}.__call__ takes no `train` argument, and its "
                      f"{', '.join(others)} change in training mode: give flax_training= the "
                      "keyword arguments that put it in training mode (e.g. "
                      "flax_training={'training': True}), or flax_training={} to call it as "
                      "it is (training=False: both sides in eval mode)")


@contextlib.contextmanager
def _named_training(flax_module: Any, arguments: Mapping[str, Any]) -> Iterator[None]:
    """A call that refuses the training arguments is a [parity] error naming them."""
    try:
        yield
    except TypeError as error:
        if "unexpected keyword argument" not in str(error):
            raise
        name = type(getattr(flax_module, "module", flax_module)).__name__
        raise ParityError(f"{name} refused the training arguments {dict(arguments)!r} "
                          f"({error}): give flax_training= the keyword arguments its __call__ "
                          "takes for training mode, or flax_training={}") from None


def outputs_device(outputs: Any) -> Any:
    """The torch device of the first tensor in `outputs`."""
    while isinstance(outputs, (dict, list, tuple)):
        outputs = next(iter(outputs.values())) if isinstance(outputs, dict) else outputs[0]
    return outputs.device


def steps_parity(pair: Any, batches: Any, *, optimizer: Any, steps: int | None = None,
                 loss: Any = None, training: bool = True,
                 flax_training: Mapping[str, Any] | None = None, seed: int = 0,
                 rtol: float | None = None, atol: float | None = None,
                 name: str | None = None) -> StepsResult:
    """What `LoadedPair.assert_steps_close` runs (its doc says what each argument takes).

    Raises:
        AssertionError: the failure report, the losses of each step, the parameters that
            differ after the last step.
        ParityError: an optimizer without an optax equivalent, batches that do not fit.
    """
    __tracebackhide__ = True
    factory, tx = optimizer if isinstance(optimizer, Sequence) and len(optimizer) == 2 \
        else (optimizer, None)
    if not callable(factory) or (tx is not None and not hasattr(tx, "update")):
        raise ParityError(f"optimizer= takes a factory of torch's optimizer "
                          "(lambda ps: torch.optim.AdamW(ps, lr=1e-3)), or (that factory, an "
                          f"optax transformation); got {optimizer!r}")
    host = batches_of(batches, steps)
    import jax

    weights = jax.device_get(pair.flax_variables)
    plan = _Plan(factory, tx, checked_losses(loss), seed, training,
                 training_arguments(pair.flax_model, flax_training, weights) if training
                 else {})
    flax_host = [pair.pair.to_flax(batch) for batch in host]
    drawn: dict[str, Any] = {}

    def train(dtype: str, watch: bool = False, pins: tuple[Any, Any] | None = None
              ) -> tuple[Trained, Trained]:
        wide = dtype != pair.dtype
        with precision(dtype):
            return _train(plan, pair, pair.torch_model, pair.flax_model, weights,
                          [rounded_inputs(batch, pair.dtype) for batch in host] if wide
                          else host, [rounded_inputs(batch, pair.dtype) for batch in flax_host]
                          if wide else flax_host, dtype, drawn, watch, pins)

    flax_side, torch_side = train(pair.dtype)
    reference = None
    if budget_wanted(pair.dtype):
        # every step's loss too: after the first, it follows the parameters' trajectory
        reference = tuple(side.tree() for side in train(REFERENCE_DTYPES[pair.dtype]))
    label = f"{name or pair.name}: {len(host)} training step{'' if len(host) == 1 else 's'}"

    def judged(flax_side: Trained, torch_side: Trained, reference: Any) -> Comparison:
        return compared(flax_side.tree(), torch_side.tree(), name=label, rtol=rtol, atol=atol,
                        reference=reference, budget_by_default=GRADIENT_BUDGET,
                        both_sides=True)

    comparison, branches, cause = judged(flax_side, torch_side, reference), Branches(), []
    if reference is not None and (not comparison.passed
                                  or drifted_apart(comparison, pair.dtype, "steps")):
        flax_wide, torch_wide = train(REFERENCE_DTYPES[pair.dtype], watch=True)
        try:
            flax_pinned, torch_pinned = train(pair.dtype, pins=(torch_wide.choices,
                                                                flax_wide.choices))
        except ValueError as error:  # a forward whose ops change between runs
            branches = Branches(problem="the run through the reference's branches failed: "
                                        f"{error}")
        else:
            flips = steps_flips(torch_pinned, torch_wide, flax_pinned, flax_wide)
            branches = Branches(flips=flips, checked=True,
                                unpinned=comparison if flips else None)
            if flips:  # else nothing moved: the first run's verdict stands
                flax_side, torch_side = flax_pinned, torch_pinned
                comparison = judged(flax_side, torch_side,
                                    (flax_wide.tree(), torch_wide.tree()))
            if not comparison.passed:
                cause = first_parting_lines(flax_pinned, torch_pinned, flax_wide, torch_wide,
                                            label, pair.pair.mapping, comparison)
    losses = [f"{PREFIX} loss per step: torch {listed(torch_side.losses)}, "
              f"Flax {listed(flax_side.losses)}"]
    record = comparison.to_record().with_fields(
        pair=pair.name,
        losses={"torch": torch_side.losses.tolist(), "flax": flax_side.losses.tolist()})
    concluded_with_branches(comparison, branches, pair.dtype, "steps", [*losses, *(
        [] if cause else parting_lines(comparison, pair.pair.mapping, "parameters"))], record,
                            cause)
    return StepsResult(comparison, torch_side, flax_side)
