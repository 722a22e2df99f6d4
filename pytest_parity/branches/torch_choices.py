"""The torch side's non-smooth ops, seen and pinned: a TorchFunctionMode.

Inside `TorchChoices(model)` every ReLU (functional, method or module), ReLU6, hardtanh,
clamp, leaky ReLU, abs, maximum, minimum, where and max pool the model calls records which
operand each output element took (a max pool: each window's winner), and where the operands
stood (`Choice`), with the module that called it. Given `pins` (another run's choices, op by
op), each op's backward is taken through them: the output gains `(pinned - chosen) *
(operand - operand.detach())` where they differ, 0 in value. Each op's output is torch's own
(an in-place call runs out of place, then is copied into its input).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pytest_parity.branches.choices import Choice

# (operands, which operand each element took, how far apart they stood)
Taken = tuple[list[Any], Any, Any]


def _relu(x: Any) -> Taken:
    import torch

    return [x, None], torch.where(x > 0, 0, 1), x


def _abs(x: Any) -> Taken:
    import torch

    return [x, -x], torch.where(x > 0, 0, 1), x


def _clamp(x: Any, low: Any, high: Any) -> Taken:
    import torch

    below = torch.zeros_like(x, dtype=torch.bool) if low is None else x < low
    above = torch.zeros_like(x, dtype=torch.bool) if high is None else x > high
    chosen = torch.where(below, 0, torch.where(above, 2, 1))
    near = [x - bound for bound in (low, high) if bound is not None]
    apart = near[0] if len(near) == 1 else torch.where(
        near[0].abs() < near[1].abs(), near[0], near[1])
    return [low, x, high], chosen, apart


def _leaky(x: Any, slope: float) -> Taken:
    import torch

    return [x, x * slope], torch.where(x > 0, 0, 1), x


def _two(wins: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Taken]:
    import torch

    def taken(a: Any, b: Any) -> Taken:
        return [a, b], torch.where(wins(a, b), 0, 1), a - b

    return taken


def _where(condition: Any, a: Any, b: Any) -> Taken:
    import torch

    return [b, a], condition.to(torch.int8), None


# How each function's arguments reach its choice, by torch's own parameter names; a call they
# do not fit (an out= tensor, a one-argument where) runs as it is, unseen.
def _x(input: Any, *_: Any, **__: Any) -> tuple[Any, ...]:
    return (input,)


def _hardtanh(input: Any, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
              ) -> tuple[Any, ...]:
    return input, min_val, max_val


def _relu6(input: Any, inplace: bool = False) -> tuple[Any, ...]:
    return input, 0.0, 6.0


def _bounds(input: Any, min: Any = None, max: Any = None) -> tuple[Any, ...]:
    return input, min, max


def _slope(input: Any, negative_slope: float = 0.01, inplace: bool = False
           ) -> tuple[Any, ...]:
    return input, negative_slope


def _other(input: Any, other: Any) -> tuple[Any, ...]:
    return input, other


def _condition(condition: Any, input: Any, other: Any) -> tuple[Any, ...]:
    return condition, input, other


# torch function -> (the op's name, its choices, its arguments as the choice takes them, the
# position of its `inplace` argument or "always" for the in-place variants)
Entry = tuple[str, Callable[..., Taken], Callable[..., tuple[Any, ...]], int | str | None]


def _table() -> dict[Any, Entry]:
    import torch
    import torch.nn.functional as F

    table: dict[Any, Entry] = {}
    function: Any
    for function in (torch.relu, torch.Tensor.relu):
        table[function] = ("relu", _relu, _x, None)
    for function in (torch.relu_, torch.Tensor.relu_):
        table[function] = ("relu", _relu, _x, "always")
    table[F.relu] = ("relu", _relu, _x, 1)
    for function in (torch.abs, torch.Tensor.abs):
        table[function] = ("abs", _abs, _x, None)
    table[F.relu6] = ("relu6", _clamp, _relu6, 1)
    table[F.hardtanh] = ("hardtanh", _clamp, _hardtanh, 3)
    for function in (torch.clamp, torch.clip, torch.Tensor.clamp, torch.Tensor.clip):
        table[function] = ("clamp", _clamp, _bounds, None)
    table[F.leaky_relu] = ("leaky_relu", _leaky, _slope, 2)
    for function in (torch.maximum, torch.Tensor.maximum):
        table[function] = ("maximum", _two(torch.gt), _other, None)
    for function in (torch.minimum, torch.Tensor.minimum):
        table[function] = ("minimum", _two(torch.lt), _other, None)
    table[torch.where] = ("where", _where, _condition, None)
    return table


def _pools() -> dict[Any, tuple[str, Any, int]]:
    """max pooling functions -> (the op's name, the function giving indices, its dims)."""
    import torch.nn.functional as F

    pools: dict[Any, tuple[str, Any, int]] = {}
    for dims in (1, 2, 3):
        plain, indexed = getattr(F, f"max_pool{dims}d"), getattr(
            F, f"max_pool{dims}d_with_indices")
        pools[plain] = pools[indexed] = (f"max_pool{dims}d", indexed, dims)
    return pools


def _out_of_place(func: Any, where: int | str | None, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> tuple[Any, tuple[Any, ...], dict[str, Any], bool]:
    """(the function to run, its arguments, whether the caller asked for it in place)."""
    import torch

    if where == "always":
        return torch.relu, args, kwargs, True
    if isinstance(where, int) and len(args) > where:
        return func, (*args[:where], False, *args[where + 1:]), kwargs, bool(args[where])
    if where is not None and kwargs.get("inplace"):
        return func, args, {**kwargs, "inplace": False}, True
    return func, args, kwargs, False


class TorchChoices:
    """A context in which `model`'s non-smooth ops are recorded (`choices` after it) and,
    with `pins`, their backward taken through the pinned choices."""

    def __init__(self, model: Any, pins: Sequence[np.ndarray] | None = None) -> None:
        # chosen: int8 operand positions; a max pool's: its windows' winners (int64)
        self.model, self.pins = model, pins
        self.seen: list[tuple[str, str, Any, Any]] = []
        self._mode: Any = None
        self._hooks: list[Any] = []

    @property
    def choices(self) -> list[Choice]:
        return [Choice(where, op, chosen.detach().cpu().numpy(),
                       None if apart is None else apart.detach().cpu().double().numpy())
                for where, op, chosen, apart in self.seen]

    def __enter__(self) -> TorchChoices:
        import torch
        from torch.overrides import TorchFunctionMode

        names = {id(module): name for name, module in self.model.named_modules()}
        stack: list[str] = []

        def entered(module: Any, _: Any) -> None:
            stack.append(names.get(id(module), stack[-1] if stack else ""))

        def left(*_: Any) -> None:  # a hook that returns something replaces the output
            if stack:
                stack.pop()

        self._hooks = [torch.nn.modules.module.register_module_forward_pre_hook(entered),
                       torch.nn.modules.module.register_module_forward_hook(
                           left, always_call=True)]
        table, pools, owner = _table(), _pools(), self

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func: Any, types: Any, args: Any = (),
                                   kwargs: Any = None) -> Any:
                kwargs = kwargs or {}
                where = stack[-1] if stack else ""
                if func in pools:
                    return owner._pooled(where, *pools[func], args, kwargs)
                if func not in table:
                    return func(*args, **kwargs)
                op, choice, arguments, inplace_at = table[func]
                try:
                    given = arguments(*args, **kwargs)
                except TypeError:
                    return func(*args, **kwargs)
                run, args, kwargs, in_place = _out_of_place(func, inplace_at, args, kwargs)
                output = run(*args, **kwargs)
                if not isinstance(output, torch.Tensor) or not torch.is_floating_point(output):
                    return output
                operands, chosen, apart = choice(*given)
                output = owner._seen(where, op, operands, chosen, apart, output)
                if in_place:
                    return args[0].copy_(output)
                return output

        self._mode = Mode()
        self._mode.__enter__()
        return self

    def _seen(self, where: str, op: str, operands: list[Any], chosen: Any, apart: Any,
              output: Any) -> Any:
        import torch

        pin = self._pin(op, where, chosen, output.device)
        self.seen.append((where, op, chosen.to(torch.int8), apart))
        if pin is None:
            return output
        for number, operand in enumerate(operands):
            if isinstance(operand, torch.Tensor) and operand.requires_grad:
                moved = (pin == number).to(output.dtype) - (chosen == number).to(output.dtype)
                # only where the choice moved: elsewhere an inf operand would make 0 * nan
                output = output + torch.where(moved != 0, moved * (operand - operand.detach()),
                                              0.0)
        return output

    def _pin(self, op: str, where: str, chosen: Any, device: Any) -> Any:
        import torch

        number = len(self.seen)
        if self.pins is None:
            return None
        if number >= len(self.pins):
            raise ValueError(f"more non-smooth ops ran than the {len(self.pins)} pinned")
        pin = torch.as_tensor(self.pins[number], device=device)
        if tuple(pin.shape) != tuple(chosen.shape):
            raise ValueError(f"a pinned choice of shape {tuple(pin.shape)} for {op} in "
                             f"{where}, whose choices have shape {tuple(chosen.shape)}")
        return pin

    def _pooled(self, where: str, op: str, indexed: Any, dims: int, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        """A max pool's output, its backward routed to the pinned winners: the gradient of
        x at the pinned index added, at ours taken away, where they differ. `indexed`: the
        pool returning its windows' winners, torch's indices (how its backward routes)."""
        import torch

        wanted = bool(kwargs.pop("return_indices", False))
        if len(args) > 6:  # max_poolNd(input, kernel, stride, padding, dilation, ceil, indices)
            wanted, args = bool(args[6]), args[:6]
        pooled, winners = indexed(*args, **kwargs)
        x = args[0] if args else kwargs["input"]
        pin = self._pin(op, where, winners, pooled.device)
        apart = None
        if pin is not None:
            values = x.flatten(start_dim=x.ndim - dims)

            def at(index: Any) -> Any:
                flat = index.flatten(start_dim=index.ndim - dims)
                return values.gather(-1, flat).reshape(index.shape)

            apart = (at(winners) - at(pin)).detach()
            if x.requires_grad:
                moved = pin != winners
                pooled = pooled + torch.where(moved, (at(pin) - at(pin).detach())
                                              - (at(winners) - at(winners).detach()), 0.0)
        self.seen.append((where, op, winners, apart))
        return (pooled, winners) if wanted else pooled

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)
        for hook in self._hooks:
            hook.remove()
