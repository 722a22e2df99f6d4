"""The loss goes down: a few optimizer steps of one side on one fixed batch, and the loss
must fall. A cheap sanity test of a port (or of the original) before any reference exists: a
model whose parameters get no gradient (a detached output, a stop_gradient over everything,
layers never registered as parameters) cannot lower its loss, and says so.

    losses = assert_loss_decreases(torch_model, images, loss=lambda out: out.square().mean())
    losses = assert_loss_decreases(flax_module, images, variables=variables,
                                   loss=lambda out: (out ** 2).mean())
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from pytest_parity.compare import problem_record, records
from pytest_parity.errors import PREFIX, ParityError

DEFAULT_STEPS = 5
DEFAULT_LEARNING_RATE = 1e-2  # plain SGD on either side unless an optimizer is given


def _default_loss(outputs: Any) -> Any:
    """The mean square of the (first) output: falls for any model with a gradient."""
    while isinstance(outputs, (dict, list, tuple)):
        outputs = next(iter(outputs.values())) if isinstance(outputs, dict) else outputs[0]
    if hasattr(outputs, "detach"):  # torch
        return outputs.float().square().mean()
    return (outputs.astype("float32") ** 2).mean()


def _torch_losses(model: Any, batch: Any, loss: Callable[[Any], Any], optimizer: Any,
                  steps: int) -> tuple[list[float], bool]:
    import torch

    given = {key: torch.as_tensor(np.asarray(value)) for key, value in batch.items()} \
        if isinstance(batch, dict) else torch.as_tensor(np.asarray(batch))
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = (optimizer or (lambda ps: torch.optim.SGD(ps, lr=DEFAULT_LEARNING_RATE)))(
        parameters) if parameters else None
    losses, got_gradient = [], False
    for _ in range(steps):
        with torch.enable_grad():
            value = loss(model(**given) if isinstance(given, dict) else model(given))
            if optimizer is not None and value.requires_grad:
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                got_gradient = got_gradient or any(
                    p.grad is not None and bool(p.grad.abs().sum() > 0) for p in parameters)
                optimizer.step()
        losses.append(float(value.detach()))
    return losses, got_gradient


def _flax_losses(module: Any, variables: Any, batch: Any, loss: Callable[[Any], Any],
                 optimizer: Any, steps: int, apply_kwargs: dict[str, Any]
                 ) -> tuple[list[float], bool]:
    import jax
    import optax

    tx = optimizer or optax.sgd(DEFAULT_LEARNING_RATE)
    params = variables.get("params", {})
    others = {key: value for key, value in variables.items() if key != "params"}

    @jax.jit
    def step(params: Any, opt_state: Any) -> Any:
        def objective(params: Any) -> Any:
            outputs = module.apply({**others, "params": params}, **batch, **apply_kwargs) \
                if isinstance(batch, dict) else module.apply({**others, "params": params},
                                                             batch, **apply_kwargs)
            return loss(outputs)

        value, grads = jax.value_and_grad(objective)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        moved = sum(jax.numpy.sum(jax.numpy.abs(g)) for g in jax.tree_util.tree_leaves(grads))
        return value, optax.apply_updates(params, updates), opt_state, moved

    opt_state, losses, got_gradient = tx.init(params), [], False
    for _ in range(steps):
        value, params, opt_state, moved = step(params, opt_state)
        losses.append(float(value))
        got_gradient = got_gradient or float(moved) > 0
    return losses, got_gradient


def assert_loss_decreases(model: Any, batch: Any, *, loss: Callable[[Any], Any] | None = None,
                          variables: Any = None, optimizer: Any = None,
                          steps: int = DEFAULT_STEPS, apply_kwargs: dict[str, Any] | None = None,
                          name: str = "loss goes down") -> list[float]:
    """Train `model` (a torch module, trained in place; or a Flax module with `variables`,
    which stay as they are) for `steps` steps on `batch` and assert its last loss is below
    its first. Returns every step's loss (also in the report's record).

    Args:
        loss: a function of the model's outputs returning a scalar; default: the mean
            square of the (first) output.
        optimizer: torch: a factory of the parameters (`lambda ps: torch.optim.Adam(ps)`);
            Flax: an optax transformation; default: SGD at learning rate 1e-2.
        apply_kwargs: Flax: keyword arguments of `apply` (e.g. `{"train": False}`).

    Raises:
        AssertionError: the loss did not fall (the losses, and whether any parameter got a
            gradient at all).
        ParityError: a Flax module without `variables`.
    """
    __tracebackhide__ = True
    if steps < 2:
        raise ParityError(f"steps={steps}: the loss needs 2 steps or more to fall")
    loss = loss or _default_loss
    if hasattr(model, "parameters") and callable(model.parameters):
        losses, got_gradient = _torch_losses(model, batch, loss, optimizer, steps)
    else:
        if variables is None:
            raise ParityError(f"{type(model).__name__}: a Flax module needs its "
                              "variables= to be trained")
        losses, got_gradient = _flax_losses(model, variables, batch, loss, optimizer, steps,
                                            apply_kwargs or {})
    first, last = losses[0], losses[-1]
    passed = math.isfinite(last) and last < first
    records.emit(problem_record(name, "").without("problem").with_fields(
        kind="loss_down", losses=losses, passed=passed, leaves=1, size=len(losses),
        max_abs=abs(last - first), max_rel=abs(last - first) / max(abs(first), 1e-30),
        margin=1.0 + (last - first) / max(abs(first), 1e-30), tolerance_from="-",
        n_failing=0 if passed else 1))
    if not passed:
        why = "" if got_gradient else (" No parameter got a gradient: the loss does not "
                                       "depend on any parameter (a detached output, a "
                                       "stop_gradient, layers not registered as parameters).")
        raise AssertionError(f"{PREFIX} {name}: the loss did not go down in {steps} steps: "
                             f"{', '.join(f'{value:.6g}' for value in losses)}.{why}")
    return losses
