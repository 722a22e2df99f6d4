"""The torch side's non-smooth ops, seen and pinned: a TorchFunctionMode.

Inside `TorchChoices(model)` every ReLU (functional, method or module), ReLU6, hardtanh,
clamp, leaky ReLU, maximum, minimum and where the model calls records which operand each
output element took, and where the operands stood (`Choice`), with the module that called it.
Given `pins` (another run's choices, op by op), each op's backward is taken through them: the
output gains `(pinned - chosen) * (operand - operand.detach())`, 0 in value. In-place variants
(nn.ReLU(inplace=True)) run out of place: the module's result is what the caller uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pytest_parity.branches.choices import Choice

# (operands, which operand each element took, how far apart they stood, the output)
Taken = tuple[list[Any], Any, Any, Any]


def _relu(x: Any) -> Taken:
    import torch

    return [x, None], torch.where(x > 0, 0, 1), x, torch.relu(x)


def _clamp(x: Any, low: Any, high: Any) -> Taken:
    import torch

    below = torch.zeros_like(x, dtype=torch.bool) if low is None else x < low
    above = torch.zeros_like(x, dtype=torch.bool) if high is None else x > high
    chosen = torch.where(below, 0, torch.where(above, 2, 1))
    near = [x - bound for bound in (low, high) if bound is not None]
    apart = near[0] if len(near) == 1 else torch.where(
        near[0].abs() < near[1].abs(), near[0], near[1])
    return [low, x, high], chosen, apart, torch.clamp(x, low, high)


def _leaky(x: Any, slope: float = 0.01) -> Taken:
    import torch

    sloped = x * slope
    return [x, sloped], torch.where(x > 0, 0, 1), x, torch.where(x > 0, x, sloped)


def _two(wins: Callable[[Any, Any], Any], pick: Callable[[Any, Any], Any]
         ) -> Callable[[Any, Any], Taken]:
    import torch

    def taken(a: Any, b: Any) -> Taken:
        return [a, b], torch.where(wins(a, b), 0, 1), a - b, pick(a, b)

    return taken


def _where(condition: Any, a: Any, b: Any) -> Taken:
    import torch

    return [b, a], condition.to(torch.int8), None, torch.where(condition, a, b)


def _pooled(dims: int) -> Callable[..., Taken]:
    """Max pooling over `dims` trailing axes: the choice is each window's winner, its index
    in the flattened window axes of the input (as torch's backward routes the gradient)."""
    import torch.nn.functional as F

    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[dims]

    def taken(x: Any, *args: Any, return_indices: bool = False, **kwargs: Any) -> Taken:
        output, winners = pool(x, *args, return_indices=True, **kwargs)
        return [x], winners, None, (output, winners) if return_indices else output

    return taken


def _table() -> dict[Any, tuple[str, Callable[..., Taken], Callable[..., tuple[Any, ...]]]]:
    """torch function -> (the op's name, its choices, its arguments as the choice takes them)."""
    import torch
    import torch.nn.functional as F

    def one(x: Any, *_: Any, **__: Any) -> tuple[Any, ...]:
        return (x,)

    def hardtanh(x: Any, min_val: float = -1.0, max_val: float = 1.0, *_: Any,
                 **__: Any) -> tuple[Any, ...]:
        return x, min_val, max_val

    def clamp(x: Any, min: Any = None, max: Any = None, **_: Any) -> tuple[Any, ...]:
        return x, min, max

    def leaky(x: Any, negative_slope: float = 0.01, *_: Any, **__: Any) -> tuple[Any, ...]:
        return x, negative_slope

    def two(a: Any, b: Any, **_: Any) -> tuple[Any, ...]:
        return a, b

    def where(condition: Any, a: Any = None, b: Any = None) -> tuple[Any, ...]:
        return condition, a, b

    maximum, minimum = _two(torch.gt, torch.maximum), _two(torch.lt, torch.minimum)
    table: dict[Any, tuple[str, Callable[..., Taken], Callable[..., tuple[Any, ...]]]] = {}
    function: Any
    for function in (F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_):
        table[function] = ("relu", _relu, one)
    table[F.relu6] = ("relu6", _clamp, lambda x, *_, **__: (x, 0.0, 6.0))
    table[F.hardtanh] = ("hardtanh", _clamp, hardtanh)
    for function in (torch.clamp, torch.clip, torch.Tensor.clamp, torch.Tensor.clip):
        table[function] = ("clamp", _clamp, clamp)
    table[F.leaky_relu] = ("leaky_relu", _leaky, leaky)
    for function in (torch.maximum, torch.Tensor.maximum):
        table[function] = ("maximum", maximum, two)
    for function in (torch.minimum, torch.Tensor.minimum):
        table[function] = ("minimum", minimum, two)
    table[torch.where] = ("where", _where, where)
    for dims, function in ((1, F.max_pool1d), (2, F.max_pool2d), (3, F.max_pool3d)):
        table[function] = (f"max_pool{dims}d", _pooled(dims), lambda *a, **k: (a, k))
    return table


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
        table, owner = _table(), self

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func: Any, types: Any, args: Any = (),
                                   kwargs: Any = None) -> Any:
                kwargs = kwargs or {}
                if func not in table or (func is torch.where and len(args) + len(kwargs) < 3):
                    return func(*args, **kwargs)
                op, choice, arguments = table[func]
                where = stack[-1] if stack else ""
                if op.startswith("max_pool"):
                    operands, chosen, _, output = choice(*args, **kwargs)
                    return owner._pooled(where, op, operands[0], chosen, output)
                operands, chosen, apart, output = choice(*arguments(*args, **kwargs))
                if not torch.is_floating_point(output):
                    return output
                return owner._seen(where, op, operands, chosen, apart, output)

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
                output = output + moved * (operand - operand.detach())
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

    def _pooled(self, where: str, op: str, x: Any, winners: Any, output: Any) -> Any:
        """A max pool's output, its backward routed to the pinned winners: the gradient of
        x at the pinned index added, at ours taken away, where they differ."""

        pooled = output[0] if isinstance(output, tuple) else output
        pin = self._pin(op, where, winners, pooled.device)
        apart = None
        if pin is not None:
            dims = int(op[len("max_pool")])
            values = x.flatten(start_dim=x.ndim - dims)

            def at(index: Any) -> Any:
                flat = index.flatten(start_dim=index.ndim - dims)
                return values.gather(-1, flat).reshape(index.shape)

            apart = (at(winners) - at(pin)).detach()
            if x.requires_grad:
                moved = (pin != winners).to(pooled.dtype)
                pooled = pooled + moved * ((at(pin) - at(pin).detach())
                                           - (at(winners) - at(winners).detach()))
        self.seen.append((where, op, winners, apart))
        return (pooled, winners) if isinstance(output, tuple) else pooled

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)
        for hook in self._hooks:
            hook.remove()
