"""N optimizer steps on each side from the same weights and batches: the framework math.

torch: `optimizer.zero_grad(); loss(model(batch)).backward(); optimizer.step()` per batch, the
model in training mode (BatchNorm normalises by the batch and updates its running statistics)
with every dropout layer in eval mode: both sides cannot draw the same mask. Flax: one jitted
step per batch, `value_and_grad` of the same loss through `apply` in training mode (the
non-parameter collections, e.g. batch_stats, mutable and carried to the next step), then
`tx.update` and `optax.apply_updates`.

What each side ends with is numpy by torch key (`Trained`): the loss of every step, the
parameters, the buffers a Flax collection holds (running statistics), and the optimizer's
state per torch state name (exp_avg, momentum_buffer, ...); the Flax side's is carried back
through the mapping like the parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_parity.arrays import to_numpy
from pytest_parity.branches import Choice, Seen, TorchChoices, pinned, recorded
from pytest_parity.mapping import Mapping as WeightMapping
from pytest_parity.train.gradients import scalar_loss
from pytest_parity.train.optimizers import optax_field

Forward = Callable[[Any], Any]


@dataclass(frozen=True)
class Trained:
    """One side after its steps, numpy by torch key."""

    losses: np.ndarray  # one per step
    params: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    optimizer: dict[str, dict[str, np.ndarray]]  # torch state name -> key -> array
    # Where the steps were watched (`watch=` or `pins=`): each step's forward's choices
    # (pytest_parity.branches), and the parameters after each step.
    choices: list[list[Choice]] = field(default_factory=list)
    after_each_step: list[dict[str, np.ndarray]] = field(default_factory=list)

    def tree(self) -> dict[str, Any]:
        """What is compared: the losses, parameters, buffers and optimizer state."""
        tree: dict[str, Any] = {"losses": self.losses, "params": self.params}
        if self.buffers:
            tree["buffers"] = self.buffers
        if self.optimizer:
            tree["optimizer"] = self.optimizer
        return tree


def training_mode(model: Any) -> Any:
    """The torch model in training mode, its dropout layers in eval mode (no mask)."""
    import torch

    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.eval()
    return model


def torch_steps(model: Any, optimizer: Any, forward: Forward, batches: Sequence[Any],
                loss: Callable[[Any], Any], parameter_keys: Sequence[str],
                buffer_keys: Sequence[str], state_names: Sequence[str],
                watch: bool = False, pins: Sequence[Sequence[Choice]] | None = None
                ) -> Trained:
    """Train `model` (in place) one step per batch (placed tensors, or dicts of them).
    `parameter_keys`, `buffer_keys`: what to report; `state_names`: the optimizer's state to
    report. `watch`: record each step's forward's choices; `pins`: each step's forward's
    backward taken through these choices (one list per step), its own recorded."""
    import torch

    losses, dtype, choices, after = [], None, [], []
    watched = {key: value for key, value in model.named_parameters() if key in parameter_keys}
    for number, batch in enumerate(batches):
        optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            if watch or pins is not None:
                with TorchChoices(model, None if pins is None else
                                  [choice.chosen for choice in pins[number]]) as seen:
                    outputs = forward(batch)
                choices.append(seen.choices)
            else:
                outputs = forward(batch)
            value = loss(outputs)
            scalar_loss(value)
            value.backward()
        optimizer.step()
        if watch or pins is not None:
            after.append({key: to_numpy(value.detach()).copy() for key, value in watched.items()})
        losses.append(float(value.detach()))
        dtype = to_numpy(value.detach()).dtype
    params = {key: value for key, value in model.named_parameters() if key in parameter_keys}
    key_of = {id(parameter): key for key, parameter in params.items()}
    state: dict[str, dict[str, np.ndarray]] = {name: {} for name in state_names}
    for parameter, values in optimizer.state.items():
        if id(parameter) not in key_of:
            continue
        for name in state_names:
            if name in values:
                state[name][key_of[id(parameter)]] = to_numpy(values[name].detach())
    buffers = dict(model.named_buffers())
    return Trained(np.asarray(losses, dtype),  # the loss's own dtype: its tolerance's
                   {key: to_numpy(value.detach()) for key, value in params.items()},
                   {key: to_numpy(buffers[key]) for key in buffer_keys},
                   {name: found for name, found in state.items() if found}, choices, after)


def flax_steps(apply: Callable[..., Any], variables: Mapping[str, Any], tx: Any,
               batches: Sequence[Any], loss: Callable[[Any, Any], Any], weights: Any,
               mapping: WeightMapping, state_fields: Mapping[str, str], watch: bool = False,
               pins: Sequence[Sequence[Choice]] | None = None) -> Trained:
    """One jitted step per batch (placed jax inputs): `apply(variables, inputs)` returns
    (outputs, updated non-parameter collections) in training mode. `state_fields`: torch
    state name -> the optax state field holding it (exp_avg -> mu). `watch`, `pins`: as
    torch_steps takes them."""
    import jax
    import optax

    seen = Seen()

    def watched(variables: Any, inputs: Any, pins: Any) -> Any:
        if pins is not None:
            return pinned(apply, seen)(variables, inputs, pins)
        return recorded(apply, seen)(variables, inputs) if watch else (
            apply(variables, inputs), [])

    def step(params: Any, others: Any, opt_state: Any, inputs: Any, pins: Any) -> Any:
        def objective(params: Any) -> Any:
            (outputs, updated), own = watched({**others, "params": params}, inputs, pins)
            return loss(outputs, weights), (updated, own)

        (value, (updated, own)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (value, optax.apply_updates(params, updates), {**others, **updated}, opt_state,
                own)

    jitted = jax.jit(step)
    params = variables["params"]
    others = {key: value for key, value in variables.items() if key != "params"}
    opt_state = tx.init(params)
    losses, dtype, choices, after = [], None, [], []
    for number, batch in enumerate(batches):
        step_pins = None if pins is None else [choice.chosen for choice in pins[number]]
        value, params, others, opt_state, own = jitted(params, others, opt_state, batch,
                                                       step_pins)
        if watch or pins is not None:
            choices.append(seen.choices(own))
            after.append(_by_torch_key(mapping, params))
        losses.append(float(value))
        dtype = np.asarray(value).dtype
    canonical, _ = mapping.flax_to_canonical(jax.device_get({**others, "params": params}))
    by_key = mapping.canonical_to_torch(canonical)
    buffers = {key: value for key, value in by_key.items()
               if (rule := mapping.rule_for(key, "torch")) and rule.collection != "params"}
    optimizer = {name: _by_torch_key(mapping, optax_field(opt_state, field))
                 for name, field in state_fields.items()}
    return Trained(np.asarray(losses, dtype),
                   {key: value for key, value in by_key.items() if key not in buffers},
                   buffers, {name: found for name, found in optimizer.items() if found},
                   choices, after)


def _by_torch_key(mapping: WeightMapping, params_tree: Any) -> dict[str, np.ndarray]:
    import jax

    if params_tree is None:
        return {}
    canonical, _ = mapping.flax_to_canonical({"params": jax.device_get(params_tree)})
    return mapping.canonical_to_torch(canonical)
