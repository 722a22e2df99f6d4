"""The Flax side's non-smooth ops, seen and pinned: a jaxpr interpreter.

`recorded(fun)` runs `fun` as its jaxpr, one primitive at a time, and returns with its
outputs every choice its `max`, `min`, `clamp`, `abs`, `select_n` and `reduce_window_max`
(max pooling: each window's winner) primitives made (inside jitted functions, checkpoints and
the custom derivatives of piecewise functions such as jax.nn.relu; softplus' is smooth).
`pinned(fun)` runs it with each such op's backward taken through the choices of another run
(the reference's), and returns its own choices too. A pinned element keeps its forward value:
what is added, where the choices differ, is `(chosen by the reference - chosen here) *
(operand - stop_gradient(operand))`, 0 in value, the two branches' derivatives' difference in
gradient.

Control flow (scan, while, cond) is run as it is: choices inside a scanned layer are not seen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pytest_parity.branches.choices import Choice

CALLS = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr",
         "core_call": "call_jaxpr", "remat2": "jaxpr", "checkpoint": "jaxpr"}
CUSTOM_DERIVATIVES = ("custom_jvp_call", "custom_vjp_call")
COMPARISONS = {"gt", "ge", "lt", "le"}
# Custom derivatives whose inner ops' kinks are theirs: their choices are seen and pinned.
PIECEWISE = {"relu", "relu6", "hard_tanh"}


class _Run:
    """One interpretation: the reference's choices to pin (None: record only), the choices
    seen so far, and where each comparison's operands stood (for a select's report)."""

    def __init__(self, pins: Sequence[Any] | None) -> None:
        self.pins = pins
        self.pinning = pins is not None
        self.recording = True
        self.seen: list[tuple[str, str, Any, Any]] = []
        self.apart: dict[int, tuple[Any, Any]] = {}
        self.index = 0


def _is_floating(value: Any) -> bool:
    import jax.numpy as jnp

    return jnp.issubdtype(jnp.result_type(value), jnp.floating)


def _choice_of(name: str, invals: Sequence[Any], run: _Run) -> tuple[Any, Any, list[Any]]:
    """(which operand each element took, how far apart they were, the operands)."""
    import jax.numpy as jnp

    if name == "abs":
        (x,) = invals
        return jnp.where(x > 0, 0, 1).astype(jnp.int8), x, [x, -x]
    if name in ("max", "min"):
        a, b = invals
        wins = a > b if name == "max" else a < b
        return jnp.where(wins, 0, 1).astype(jnp.int8), a - b, [a, b]
    if name == "clamp":
        low, x, high = invals
        chosen = jnp.where(x < low, 0, jnp.where(x > high, 2, 1)).astype(jnp.int8)
        apart = jnp.where(jnp.abs(x - low) < jnp.abs(x - high), x - low, x - high)
        return chosen, apart, [low, x, high]
    predicate, *cases = invals
    compared, apart = run.apart.get(id(predicate), (None, None))
    return predicate.astype(jnp.int8), apart if compared is predicate else None, list(cases)


def _pinned_output(output: Any, chosen: Any, pin: Any, operands: list[Any]) -> Any:
    import jax
    import jax.numpy as jnp

    if tuple(jnp.shape(pin)) != tuple(jnp.shape(chosen)):
        raise ValueError(f"a pinned choice of shape {jnp.shape(pin)} for an op whose choices "
                         f"have shape {jnp.shape(chosen)}")
    for number, operand in enumerate(operands):
        operand = jnp.asarray(operand, output.dtype)
        moved = (pin == number).astype(output.dtype) - (chosen == number).astype(output.dtype)
        # only where the choice moved: elsewhere an inf operand (a -inf mask) makes 0 * nan
        output = output + jnp.where(moved != 0,
                                    moved * (operand - jax.lax.stop_gradient(operand)), 0)
    return output


def _choice(run: _Run, eqn: Any, invals: list[Any], where: str) -> Any:
    output = _bound(eqn, invals)
    if not _is_floating(output):
        return output
    chosen, apart, operands = _choice_of(eqn.primitive.name, invals, run)
    if run.recording:
        run.seen.append((where, eqn.primitive.name, chosen, apart))
    if run.pinning and run.pins is not None:
        output = _pinned_output(output, chosen, _pin(run), operands)
    run.index += 1
    return output


def _pin(run: _Run) -> Any:
    if run.pins is None or run.index >= len(run.pins):
        raise ValueError(f"more non-smooth ops ran than the {len(run.pins or [])} pinned")
    return run.pins[run.index]


def _first_max(a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
    """Of two (value, index) pairs, the larger value's, the first index among equals."""
    import jax.numpy as jnp

    (a_value, a_index), (b_value, b_index) = a, b
    first = (a_value > b_value) | ((a_value == b_value) & (a_index < b_index))
    return jnp.where(first, a_value, b_value), jnp.where(first, a_index, b_index)


def _window_choice(run: _Run, eqn: Any, invals: list[Any], where: str) -> Any:
    """A max pool (reduce_window_max): the choice is each window's winner, its index in the
    flattened input; pinned, the gradient goes to the pinned winner instead."""
    import jax
    import jax.numpy as jnp

    output = _bound(eqn, invals)
    (x,) = invals
    if not _is_floating(output):
        return output
    params = eqn.params
    index = jnp.arange(x.size, dtype=jnp.int32).reshape(x.shape)
    _, chosen = jax.lax.reduce_window(
        (jax.lax.stop_gradient(x), index), (jnp.array(-jnp.inf, x.dtype), jnp.int32(-1)),
        _first_max, params["window_dimensions"], params["window_strides"],
        params["padding"], params["base_dilation"], params["window_dilation"])
    apart = None
    if run.pinning and run.pins is not None:
        pin = _pin(run)
        flat = x.ravel()

        def at(winner: Any) -> Any:
            return jnp.take(flat, jnp.maximum(winner, 0))

        apart = jax.lax.stop_gradient(at(chosen) - at(pin))
        output = output + jnp.where(pin != chosen,
                                    (at(pin) - jax.lax.stop_gradient(at(pin)))
                                    - (at(chosen) - jax.lax.stop_gradient(at(chosen))), 0)
    if run.recording:
        run.seen.append((where, "max_pool", chosen, apart))
    run.index += 1
    return output


def _custom(run: _Run, eqn: Any, invals: list[Any], where: str) -> list[Any]:
    """A custom derivative: its own outputs and derivative, plus, for the piecewise ones
    (jax.nn.relu's), what pinning its inner ops changes (the inner run pinned minus unpinned:
    0 in value). Any other (softplus' logaddexp: a max whose kink an abs cancels) is smooth,
    run as it is."""
    outputs = _bound(eqn, invals)
    inner = eqn.params["call_jaxpr"]
    if getattr(inner.jaxpr.debug_info, "func_name", None) not in PIECEWISE:
        return outputs
    start = run.index
    found = _evaluate(run, inner.jaxpr, inner.consts, invals, where)
    if not run.pinning:
        return outputs
    end, run.index, run.pinning, run.recording = run.index, start, False, False
    unpinned = _evaluate(run, inner.jaxpr, inner.consts, invals)
    run.index, run.pinning, run.recording = end, True, True
    return [out + (pinned - plain)
            for out, pinned, plain in zip(outputs, found, unpinned, strict=True)]


def _equation(run: _Run, eqn: Any, invals: list[Any], where: str) -> list[Any]:
    name = eqn.primitive.name
    if name in CALLS:
        inner = eqn.params[CALLS[name]]
        jaxpr, consts = (inner.jaxpr, inner.consts) if hasattr(inner, "consts") else (inner, [])
        return _evaluate(run, jaxpr, consts, invals, where)
    if name in CUSTOM_DERIVATIVES:
        return _custom(run, eqn, invals, where)
    if name in ("max", "min", "clamp", "select_n", "abs"):
        return [_choice(run, eqn, invals, where)]
    if name == "reduce_window_max":
        return [_window_choice(run, eqn, invals, where)]
    outputs = _bound(eqn, invals)
    if name in COMPARISONS and _is_floating(invals[0]):
        run.apart[id(outputs)] = (outputs, invals[0] - invals[1])
    return outputs if eqn.primitive.multiple_results else [outputs]


def _bound(eqn: Any, invals: list[Any]) -> Any:
    """The equation's primitive applied as jax's own evaluator does (a custom derivative's
    functions travel as its parameters)."""
    with eqn.ctx.manager:
        return eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))


def _evaluate(run: _Run, jaxpr: Any, consts: Sequence[Any], args: Sequence[Any],
              where: str = "") -> list[Any]:
    from jax.extend.core import Literal

    env: dict[Any, Any] = {}

    def read(var: Any) -> Any:
        return var.val if isinstance(var, Literal) else env[var]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
        inside = _joined(where, str(eqn.source_info.name_stack))
        env.update(zip(eqn.outvars, _equation(run, eqn, [read(var) for var in eqn.invars],
                                              inside), strict=True))
    return [read(var) for var in jaxpr.outvars]


def _joined(outer: str, inner: str) -> str:
    """A nested equation's module path: its own name stack under the caller's, a module named
    again right after itself (a method calling its parent class's) once."""
    parts: list[str] = []
    for part in [*outer.split("/"), *inner.split("/")]:
        if part and (not parts or parts[-1] != part):
            parts.append(part)
    return "/".join(parts)


def _interpreted(fun: Callable[..., Any], args: Sequence[Any], run: _Run) -> Any:
    import jax

    closed, shape = jax.make_jaxpr(fun, return_shape=True)(*args)
    flat = _evaluate(run, closed.jaxpr, closed.consts, jax.tree.leaves(args))
    return jax.tree.unflatten(jax.tree.structure(shape), flat)


class Seen:
    """The choices a run made, filled in when it is traced: `where`/`op` of each op (static),
    and its choice arrays, returned by the run itself."""

    def __init__(self) -> None:
        self.labels: list[tuple[str, str]] = []

    def choices(self, arrays: Sequence[tuple[Any, Any]]) -> list[Choice]:
        import numpy as np

        return [Choice(where, op, np.asarray(chosen), None if apart is None
                       else np.asarray(apart))
                for (where, op), (chosen, apart) in zip(self.labels, arrays, strict=True)]


def _watched(fun: Callable[..., Any], seen: Seen, args: Sequence[Any],
             pins: Sequence[Any] | None) -> Any:
    """(`fun`'s outputs, [(chosen, apart) per op]); `seen` gets the ops' labels."""
    interpretation = _Run(pins)
    outputs = _interpreted(fun, args, interpretation)
    if pins is not None and interpretation.index != len(pins):
        raise ValueError(f"{interpretation.index} non-smooth ops ran, "
                         f"{len(pins)} choices were given")
    seen.labels = [(where, op) for where, op, _, _ in interpretation.seen]
    return outputs, [(chosen, apart) for _, _, chosen, apart in interpretation.seen]


def recorded(fun: Callable[..., Any], seen: Seen) -> Callable[..., Any]:
    """`fun`, returning (its outputs, [(chosen, apart) per op]); `seen` gets the ops' labels."""
    return lambda *args: _watched(fun, seen, args, None)


def pinned(fun: Callable[..., Any], seen: Seen) -> Callable[..., Any]:
    """`fun` with a last argument, the reference's choices (one array per op, in the order
    `recorded` gives them), its backward taken through them; returns (outputs, its own
    [(chosen, apart) per op])."""
    return lambda *args: _watched(fun, seen, args[:-1], args[-1])
