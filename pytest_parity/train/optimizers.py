"""torch.optim optimizers and their optax equivalents, as data.

Each row of EQUIVALENCES says how a torch optimizer's hyperparameters become an optax
transformation, which torch options optax cannot express (a clear error, never a silent
difference), which change nothing, and which optax state field holds each piece of torch's
per-parameter state. Read from torch 2.13's `torch/optim/{sgd,adam,adamw}.py` (the
single-tensor step, CPU's default; the foreach and fused ones compute the same) and optax
0.2.8's `_src/alias.py`, `_src/transform.py`, `transforms/{_accumulation,_adding}.py`; each
row checked by tests/unit/test_optimizer_equivalences.py (both sides on the same gradients in
float64: parameters after every step and the state after the last agree to 1e-12).

- SGD: torch adds weight_decay * p to the gradient (L2), then sets `buf = g` on the first
  step and `buf = momentum * buf + (1 - dampening) * g` after, and steps along `buf`, or
  `g + momentum * buf` with nesterov. optax.trace starts from zeros, so its first
  `g + momentum * 0` is torch's first buffer, and with dampening 0 every later one too; its
  nesterov update is the same `g + momentum * new_trace`. Weight decay is
  add_decayed_weights placed before the momentum. A dampening has no equivalent: torch's
  first buffer is undamped, and a scale before optax.trace would damp it.
- Adam: `p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`, with bc_i = 1 - beta_i**step;
  optax.scale_by_adam computes `m_hat / (sqrt(v_hat + eps_root) + eps)`: the same with
  eps_root = 0 (to rounding: torch's lerp and sqrt(v)/sqrt(bc2) against optax's
  (1 - b1) * g + b1 * m and sqrt(v / bc2)). torch's weight_decay is L2: add_decayed_weights
  before the Adam scaling. amsgrad has no equivalent: torch keeps the maximum of the raw v
  and divides it by this step's bc2, optax.scale_by_amsgrad the maximum of the corrected v.
- Adam's bias correction: optax computes it in float32, torch in Python floats; the rows use
  `scale_by_adam_as_torch` (optax's state and formula, torch's bias correction), and the
  difference stock optax makes is measured there.
- AdamW: torch decays first, `p *= 1 - lr * wd`, then takes Adam's step with the gradient at
  the undecayed p: `p - lr * (wd * p + adam)`. optax.adamw adds `wd * p` after the Adam
  scaling and scales the sum by -lr: the same. add_decayed_weights placed *before* the
  scaling instead is Adam with L2, another optimizer (the tests check that it differs).
- maximize negates the gradient; it is refused, not expressed (optax.scale(-1) first).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_parity.arrays import to_numpy
from pytest_parity.errors import ParityError


@dataclass(frozen=True)
class Equivalence:
    """One torch.optim class and the optax transformation computing the same steps."""

    torch_name: str
    optax: str  # the construction, in words
    hyperparameters: Mapping[str, str]  # torch hyperparameter -> what it becomes in optax
    fixed: Mapping[str, Any]  # torch options optax cannot express -> the one value supported
    ignored: tuple[str, ...]  # torch options that do not change the math
    state: Mapping[str, str]  # torch per-parameter state -> the optax field holding it
    step: str | None  # the optax field counting torch's per-parameter "step" (None: no step)
    build: Callable[[Mapping[str, Any]], Any]  # the group's hyperparameters -> optax


def _l2(hyper: Mapping[str, Any], transformation: Any) -> Any:
    """torch's L2 weight decay (wd * p added to the gradient) before `transformation`."""
    import optax

    decay = float(hyper.get("weight_decay", 0.0))
    if not decay:
        return transformation
    return optax.chain(optax.add_decayed_weights(decay), transformation)


def _betas(hyper: Mapping[str, Any]) -> tuple[float, float]:
    b1, b2 = hyper["betas"]
    return float(_scalar(b1)), float(_scalar(b2))


def _sgd(hyper: Mapping[str, Any]) -> Any:
    import optax

    momentum = float(hyper.get("momentum", 0.0))
    return _l2(hyper, optax.sgd(float(hyper["lr"]), momentum=momentum or None,
                                nesterov=bool(hyper.get("nesterov", False))))


def _adam(hyper: Mapping[str, Any]) -> Any:
    import optax

    if hyper.get("decoupled_weight_decay"):  # torch's Adam(decoupled_weight_decay=True)
        return _adamw(hyper)  # is AdamW
    b1, b2 = _betas(hyper)
    return _l2(hyper, optax.adam(float(hyper["lr"]), b1=b1, b2=b2, eps=float(hyper["eps"]),
                                 eps_root=0.0))


def _adamw(hyper: Mapping[str, Any]) -> Any:
    import optax

    b1, b2 = _betas(hyper)
    return optax.adamw(float(hyper["lr"]), b1=b1, b2=b2, eps=float(hyper["eps"]), eps_root=0.0,
                       weight_decay=float(hyper.get("weight_decay", 0.0)))


_NO_MATH = ("foreach", "fused", "capturable", "differentiable")  # how, not what, is computed
_ADAM_HYPER = {"lr": "learning_rate", "betas": "(b1, b2)", "eps": "eps, with eps_root=0"}
_ADAM_STATE = {"exp_avg": "mu", "exp_avg_sq": "nu"}

EQUIVALENCES: dict[str, Equivalence] = {
    "SGD": Equivalence(
        "SGD", "chain(add_decayed_weights(weight_decay), sgd(lr, momentum, nesterov))",
        {"lr": "learning_rate", "momentum": "momentum (None when 0: no trace)",
         "nesterov": "nesterov",
         "weight_decay": "add_decayed_weights before the momentum (L2, as torch adds it to "
                         "the gradient)"},
        {"dampening": 0, "maximize": False}, _NO_MATH,
        {"momentum_buffer": "trace"}, None, _sgd),
    "Adam": Equivalence(
        "Adam", "chain(add_decayed_weights(weight_decay), adam(lr, b1, b2, eps, eps_root=0))",
        {**_ADAM_HYPER,
         "weight_decay": "add_decayed_weights before the Adam scaling (L2, as torch adds it "
                         "to the gradient)",
         "decoupled_weight_decay": "True: the AdamW row"},
        {"amsgrad": False, "maximize": False}, _NO_MATH, _ADAM_STATE, "count", _adam),
    "AdamW": Equivalence(
        "AdamW", "adamw(lr, b1, b2, eps, eps_root=0, weight_decay)",
        {**_ADAM_HYPER, "weight_decay": "adamw's weight_decay (decoupled: added after the Adam "
                                        "scaling, scaled by -lr with it)"},
        {"amsgrad": False, "maximize": False}, (*_NO_MATH, "decoupled_weight_decay"),
        _ADAM_STATE, "count", _adamw),
}


def _scalar(value: Any) -> Any:
    """A python scalar for a 0-d tensor or array (torch accepts a tensor lr)."""
    return value.item() if hasattr(value, "item") else value


def _one_group(name: str, groups: list[dict[str, Any]]) -> dict[str, Any]:
    if len(groups) == 1:
        return groups[0]
    differing = [f"{option}: {', '.join(repr(_scalar(g.get(option))) for g in groups)}"
                 for option in sorted({k for g in groups for k in g} - {"params"})
                 if len({repr(_scalar(g.get(option))) for g in groups}) > 1]
    detail = f" (differing in {'; '.join(differing)})" if differing else ""
    raise ParityError(f"torch.optim.{name} has {len(groups)} parameter groups{detail};"
                      " an optax equivalent is drawn for one group only: pass your own optax "
                      "transformation (optax.multi_transform for several groups)")


def equivalence_of(torch_optimizer: Any) -> tuple[Equivalence, dict[str, Any]]:
    """The row of a constructed torch optimizer, and its one group's hyperparameters
    (python scalars; 'params' left as torch holds them).

    Raises:
        ParityError: a class no row holds, several parameter groups, an option whose value
            optax cannot express, or an option the row does not know.
    """
    name = type(torch_optimizer).__name__
    row = EQUIVALENCES.get(name)
    if row is None:
        raise ParityError(f"torch.optim.{name} has no optax equivalent here; "
                          f"supported: {', '.join(sorted(EQUIVALENCES))}, or pass your own "
                          "optax transformation")
    group = _one_group(name, torch_optimizer.param_groups)
    hyper = {option: value if option == "params" else _scalar(value)
             for option, value in group.items()}
    wrong = [f"{option}={hyper[option]!r} (supported: {value!r} only)"
             for option, value in row.fixed.items()
             if option in hyper and hyper[option] != value]
    known = {"params", *row.hyperparameters, *row.fixed, *row.ignored}
    wrong += [f"{option}={hyper[option]!r} (an option this equivalence does not read; it "
              f"reads {', '.join(sorted(known - {'params'}))})"
              for option in sorted(hyper.keys() - known)]
    if wrong:
        raise ParityError(f"torch.optim.{name}: no optax equivalent of "
                          f"{'; '.join(wrong)}")
    return row, hyper


def optax_equivalent(torch_optimizer: Any) -> Any:
    """The optax.GradientTransformation computing what `torch_optimizer` (a constructed
    torch.optim.SGD, Adam or AdamW with one parameter group) computes: the same parameters
    after every step from the same gradients. The module doc says how each row was read.
    A 0-d tensor lr gives its value; torch computes Adam's step size lr / bc1 in that tensor's
    dtype, so a float32 one rounds there (5e-10 relative after 5 float64 steps).

    Raises:
        ParityError: see equivalence_of.
    """
    row, hyper = equivalence_of(torch_optimizer)
    return row.build(hyper)


def state_fields(torch_optimizer: Any) -> dict[str, str]:
    """torch per-parameter state name -> the optax field holding it, for the optimizer's
    row ({} for SGD without momentum, which keeps no state). The step count is not here:
    see torch_state and optax_state."""
    row, hyper = equivalence_of(torch_optimizer)
    if row.torch_name == "SGD" and not hyper.get("momentum"):
        return {}
    return dict(row.state)


def torch_state(torch_optimizer: Any, names: Mapping[int, str]) -> dict[str, Any]:
    """The torch optimizer's state by optax field, to compare with optax_state's:
    {"mu": {torch key: array}, "nu": {...}, "count": 0-d array} for Adam(W),
    {"trace": {...}} for SGD with momentum, {} without. `names`: id(parameter) -> its torch
    key, e.g. `{id(p): k for k, p in model.named_parameters()}`. A parameter torch has not
    stepped yet has no arrays.

    Raises:
        ParityError: a parameter with no name, or parameters that took different numbers of
            steps (torch skips one whose .grad is None; optax steps every parameter).
    """
    row, hyper = equivalence_of(torch_optimizer)
    fields = state_fields(torch_optimizer)
    found: dict[str, Any] = {field: {} for field in fields.values()}
    steps: dict[str, int] = {}
    for parameter in hyper["params"]:
        key = names.get(id(parameter))
        if key is None:
            raise ParityError(f"a parameter of torch.optim.{row.torch_name} (shape "
                              f"{tuple(parameter.shape)}) has no name in `names` "
                              f"({len(names)} named): pass id(parameter) -> torch key for each")
        values = torch_optimizer.state.get(parameter, {})
        for torch_name, field in fields.items():
            if values.get(torch_name) is not None:
                found[field][key] = to_numpy(values[torch_name].detach())
        steps[key] = int(_scalar(values.get("step", 0)))
    if row.step is not None:
        if len(set(steps.values())) > 1:
            taken = ", ".join(f"{key}: {count}" for key, count in steps.items())
            raise ParityError(f"torch.optim.{row.torch_name}'s parameters took "
                              f"different numbers of steps ({taken}): torch skips a parameter "
                              "whose .grad is None, optax steps every parameter")
        found[row.step] = np.asarray(next(iter(steps.values()), 0))
    return found


def optax_state(opt_state: Any, row: Equivalence) -> dict[str, Any]:
    """The optax state by field, to compare with torch_state's: each of the row's fields
    ("mu", "nu", "trace") the params-shaped tree (the Flax params' structure) the state
    holds under that name, and the step count ("count") as it is, a 0-d array. A field the
    state does not hold is left out (optax.sgd without momentum keeps no trace).

    Searched by namedtuple field through the nested tuples of a chain (the first found),
    never into dicts: optax.tree_utils.tree_get would also match a parameter named "mu".
    """
    found = {}
    for field in (*row.state.values(), *([row.step] if row.step else [])):
        value = optax_field(opt_state, field)
        if value is not None:
            found[field] = value
    return found


def optax_field(state: Any, field: str) -> Any:
    """The value a namedtuple inside `state` (tuples of namedtuples) holds as `field`."""
    if hasattr(state, "_fields"):
        if field in state._fields:
            return getattr(state, field)
        children = [getattr(state, name) for name in state._fields]
    elif isinstance(state, (list, tuple)):
        children = list(state)
    else:
        return None
    for child in children:
        found = optax_field(child, field)
        if found is not None:
            return found
    return None
