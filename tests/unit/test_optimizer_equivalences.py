"""Each torch.optim -> optax equivalence (pytest_parity.train.optimizers), checked: both sides
on the same float64 parameters and the same 5 seeded gradients; the parameters after every
step and the optimizer state after the last agree to 1e-12 of each array's largest value
(rounding alone: the two compute the same formulas in different orders, e.g. torch's
sqrt(v) / sqrt(bc2) against optax's sqrt(v / bc2)). The check is not vacuous: the Adam-with-L2
reading of AdamW (and the reverse) differs by far more; and every option optax cannot express
is an error that names it."""

import numpy as np
import pytest

from pytest_parity.errors import ParityError
from pytest_parity.train.optimizers import (
    EQUIVALENCES,
    equivalence_of,
    optax_equivalent,
    optax_state,
    state_fields,
    torch_state,
)

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

SHAPES = {"kernel": (3, 4), "bias": (5,)}
STEPS = 5
TOLERANCE = 1e-12  # float64: relative to each array's largest magnitude

VARIANTS = {
    "SGD plain": lambda ps: torch.optim.SGD(ps, lr=0.1),
    "SGD momentum 0.9": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    "SGD nesterov": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
    "SGD weight_decay 0.01 with momentum": lambda ps: torch.optim.SGD(
        ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    "SGD lr as a 0-d tensor": lambda ps: torch.optim.SGD(ps, lr=torch.tensor(0.1), momentum=0.5),
    "Adam": lambda ps: torch.optim.Adam(ps, lr=1e-2, betas=(0.8, 0.95), eps=1e-6),
    "Adam weight_decay (L2)": lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=0.05),
    "Adam decoupled_weight_decay (AdamW)": lambda ps: torch.optim.Adam(
        ps, lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True),
    # float64: torch computes Adam's step size lr / bc1 in the lr tensor's dtype
    "Adam lr as a 0-d tensor": lambda ps: torch.optim.Adam(
        ps, lr=torch.tensor(1e-2, dtype=torch.float64)),
    "AdamW weight_decay 0.05": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.05),
}


def _relative(expected, actual):
    expected, actual = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    return float(np.abs(expected - actual).max() / max(np.abs(expected).max(), 1e-300))


def _run(factory, tx=None):
    """Both sides through the same 5 gradients: each step's parameters (torch's, optax's)
    and the final states, torch's by torch key and optax's as params-shaped trees."""
    rng = np.random.default_rng(0)
    start = {key: rng.standard_normal(shape) for key, shape in SHAPES.items()}
    grads = [{key: rng.standard_normal(shape) for key, shape in SHAPES.items()}
             for _ in range(STEPS)]
    params = {key: torch.nn.Parameter(torch.from_numpy(value.copy()))
              for key, value in start.items()}
    optimizer = factory(list(params.values()))
    tx = tx or optax_equivalent(optimizer)
    steps = []
    with jax.enable_x64(True):
        flax_params = {key: jax.numpy.asarray(value) for key, value in start.items()}
        opt_state = tx.init(flax_params)
        for grad in grads:
            for key, parameter in params.items():
                parameter.grad = torch.from_numpy(grad[key].copy())
            optimizer.step()
            updates, opt_state = tx.update(
                {key: jax.numpy.asarray(value) for key, value in grad.items()}, opt_state,
                flax_params)
            flax_params = optax.apply_updates(flax_params, updates)
            steps.append(({key: p.detach().numpy().copy() for key, p in params.items()},
                          jax.device_get(flax_params)))
        names = {id(parameter): key for key, parameter in params.items()}
        row, _ = equivalence_of(optimizer)
        states = torch_state(optimizer, names), jax.device_get(optax_state(opt_state, row))
    return steps, states


def _largest_difference(steps):
    return max(_relative(torch_side[key], flax_side[key])
               for torch_side, flax_side in steps for key in torch_side)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_equivalent_computes_what_torch_computes(variant):
    steps, (torch_side, flax_side) = _run(VARIANTS[variant])
    assert steps[0][0]["kernel"].dtype == np.float64
    assert _largest_difference(steps) <= TOLERANCE
    assert torch_side.keys() == flax_side.keys()
    for field, by_key in torch_side.items():
        if field == "count":  # torch's "step", the same for every parameter
            assert int(by_key) == int(flax_side[field]) == STEPS
            continue
        assert by_key.keys() == flax_side[field].keys() == SHAPES.keys()
        for key, value in by_key.items():
            assert _relative(value, flax_side[field][key]) <= TOLERANCE, (field, key)


def test_the_state_holds_what_each_optimizer_keeps():
    expected = {"SGD plain": set(), "SGD momentum 0.9": {"trace"}, "Adam": {"mu", "nu", "count"},
                "AdamW weight_decay 0.05": {"mu", "nu", "count"}}
    for variant, fields in expected.items():
        _, (torch_side, _) = _run(VARIANTS[variant])
        assert set(torch_side) == fields, variant


def test_every_row_is_checked():
    assert {variant.split()[0] for variant in VARIANTS} == set(EQUIVALENCES)


@pytest.mark.parametrize("variant, wrong", [
    ("AdamW weight_decay 0.05",
     lambda: optax.chain(optax.add_decayed_weights(0.05), optax.adam(1e-2, eps_root=0.0))),
    ("Adam weight_decay (L2)", lambda: optax.adamw(1e-2, eps_root=0.0, weight_decay=0.05)),
], ids=["AdamW read as Adam with L2", "Adam with L2 read as AdamW"])
def test_the_other_weight_decay_differs(variant, wrong):
    """The check can fail: add_decayed_weights before the Adam scaling is L2, not AdamW."""
    steps, _ = _run(VARIANTS[variant], tx=wrong())
    assert _largest_difference(steps) > 1e3 * TOLERANCE


@pytest.mark.parametrize("factory, message", [
    (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1),
     r"SGD: no optax equivalent of dampening=0.1 \(supported: 0 only\)"),
    (lambda ps: torch.optim.Adam(ps, lr=0.1, amsgrad=True),
     r"Adam: no optax equivalent of amsgrad=True \(supported: False only\)"),
    (lambda ps: torch.optim.AdamW(ps, lr=0.1, maximize=True),
     r"AdamW: no optax equivalent of maximize=True \(supported: False only\)"),
    (lambda ps: torch.optim.SGD(ps, lr=0.1, maximize=True), r"SGD: .*maximize=True"),
    (lambda ps: torch.optim.RMSprop(ps, lr=0.1),
     r"RMSprop has no optax equivalent here; supported: Adam, AdamW, SGD, or pass your "
     r"own optax transformation"),
    (lambda ps: torch.optim.SGD([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.5}], lr=0.1),
     r"SGD has 2 parameter groups \(differing in lr: 0.1, 0.5\)"),
    (lambda ps: torch.optim.SGD([{"params": ps[:1]}, {"params": ps[1:]}], lr=0.1),
     r"SGD has 2 parameter groups;"),
], ids=["dampening", "amsgrad", "maximize", "SGD maximize", "RMSprop", "two groups",
        "two equal groups"])
def test_what_optax_cannot_express_is_a_clear_error(factory, message):
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    with pytest.raises(ParityError, match=r"^\[parity\] torch\.optim\." + message):
        optax_equivalent(factory(params))


def test_an_option_no_row_reads_is_an_error():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    optimizer.param_groups[0]["initial_lr"] = 0.1  # as an LR scheduler leaves it
    with pytest.raises(ParityError, match=r"initial_lr=0.1 \(an option this equivalence does "
                                          r"not read; it reads .*momentum"):
        optax_equivalent(optimizer)


def test_options_that_do_not_change_the_math_are_accepted():
    params = [torch.nn.Parameter(torch.zeros(2))]
    optax_equivalent(torch.optim.Adam(params, foreach=False, capturable=False))
    assert state_fields(torch.optim.SGD(params, lr=0.1)) == {}
    assert state_fields(torch.optim.AdamW(params)) == {"exp_avg": "mu", "exp_avg_sq": "nu"}


def test_torch_state_names_every_parameter_and_equal_steps():
    params = [torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))]
    optimizer = torch.optim.Adam(params, lr=0.1)
    with pytest.raises(ParityError, match=r"^\[parity\] a parameter .* \(shape \(3,\)\) has no "
                                          r"name in `names`"):
        torch_state(optimizer, {id(params[0]): "a"})
    params[0].grad = torch.ones(2)
    optimizer.step()  # params[1] has no .grad: torch skips it
    with pytest.raises(ParityError, match=r"different numbers of steps \(a: 1, b: 0\)"):
        torch_state(optimizer, {id(params[0]): "a", id(params[1]): "b"})
