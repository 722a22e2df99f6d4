"""The gradients of one scalar loss on both sides, as trees the comparisons can pair.

The default loss is a fixed random projection of the outputs, sum(output * P) with P drawn
from the case's seed, one normal value per output element (over the square root of the
leaf's size): every output element moves the loss, so a wrong gradient anywhere reaches some
parameter's gradient, which a loss such as the mean of the logits would miss. A user's loss is
one function per side, each taking that side's outputs (in its own layout).

Both sides are differentiated with respect to every floating input and every parameter. The
torch side's parameter gradients are keyed by torch key, the Flax side's are carried back
through the pair's mapping (canonical, then torch keys: a conv kernel's gradient is
transposed like the kernel), so that both trees have the same keys and shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_parity.arrays import to_numpy
from pytest_parity.branches import Choice, Seen, pinned, recorded
from pytest_parity.errors import ParityError
from pytest_parity.layouts import Layout
from pytest_parity.mapping import Mapping as WeightMapping

Loss = Callable[[Any], Any]
LOW_PRECISION = ("bfloat16", "float16")


@dataclass(frozen=True)
class Gradients:
    """One side's loss and gradients, numpy in torch's layout: `inputs` (the floating inputs'
    gradients, a tree like the inputs) and `params` (torch key -> gradient)."""

    loss: np.ndarray
    inputs: Any
    params: dict[str, np.ndarray]

    def tree(self, dtype: str | None = None) -> dict[str, Any]:
        """What is compared: the loss, then the inputs' and the parameters' gradients. In a
        bfloat16 or float16 case (`dtype`) the loss, summed in float32 from that dtype's
        outputs, is rounded to it, and judged by the budget with the gradients: the float32
        table held it to 1.3e-6 where the outputs it sums are known to a bfloat16 step
        (measured: a strided convolution's loss 2.4e-4 apart, 5e-4 relative, margin 22
        against the table; torch's own bfloat16 loss 3e-4 from its float32 one)."""
        loss = self.loss
        if dtype in LOW_PRECISION:
            import ml_dtypes

            loss = np.asarray(loss).astype(ml_dtypes.bfloat16 if dtype == "bfloat16"
                                           else np.float16)
        tree: dict[str, Any] = {"loss": loss}
        if self.inputs is not None:
            tree["inputs"] = self.inputs
        tree["params"] = self.params
        return tree


def _is_floating(array: Any) -> bool:
    return np.asarray(array).dtype.kind == "f" or str(np.asarray(array).dtype) == "bfloat16"


def projections(outputs: Any, seed: int) -> Any:
    """The default loss's P: per output leaf (torch's layout), standard normal values over
    the square root of its size, float32, drawn from `seed` in the leaves' order."""
    rng = np.random.default_rng(seed)
    return _mapped(outputs, lambda leaf: (rng.standard_normal(np.shape(leaf)) / np.sqrt(
        max(1, int(np.prod(np.shape(leaf)))))).astype(np.float32))


def flax_projections(projected: Any, layout: Layout, input_rank: int) -> Any:
    """P in Flax's layout: a leaf of the input's rank moves its channels last, as the Flax
    side's feature maps are (the inverse of `Layout.output_to_torch`)."""
    return _mapped(projected, lambda leaf: leaf if layout is Layout.SAME or np.ndim(leaf)
                   != input_rank else np.ascontiguousarray(np.moveaxis(leaf, 1, -1)))


def torch_projection_loss(projected: Any, device: Any) -> Loss:
    """sum(output * P) over every output leaf, in float32 (or wider), P (torch's layout)
    on `device`."""
    import torch

    weights = _mapped(projected, lambda array: torch.from_numpy(array).to(device))

    def loss(outputs: Any) -> Any:
        return sum((output.to(torch.promote_types(output.dtype, torch.float32)) * weight).sum()
                   for output, weight in _paired(outputs, weights))

    return loss


def flax_projection_loss(outputs: Any, weights: Any) -> Any:
    """sum(output * P) over every output leaf, in float32 (or wider), P (`weights`) in
    Flax's layout (`flax_projections`): the Flax side's default loss, traced under jit."""
    import jax.numpy as jnp

    return sum(jnp.sum(output.astype(jnp.promote_types(output.dtype, jnp.float32)) * weight)
               for output, weight in _paired(outputs, weights))


def _mapped(tree: Any, function: Callable[[Any], Any]) -> Any:
    if isinstance(tree, Mapping):
        return {key: _mapped(value, function) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return tuple(_mapped(value, function) for value in tree)
    return function(tree)


def _paired(outputs: Any, projected: Any) -> list[tuple[Any, Any]]:
    if isinstance(outputs, Mapping):
        return [pair for key in outputs for pair in _paired(outputs[key], projected[key])]
    if isinstance(outputs, (list, tuple)):
        return [pair for index, value in enumerate(outputs)
                for pair in _paired(value, projected[index])]
    return [(outputs, projected)]


def scalar_loss(value: Any) -> None:
    """Raises ParityError unless the loss is one number (a tensor or array of one element)."""
    shape = tuple(getattr(value, "shape", ()))
    if int(np.prod(shape)) != 1:
        raise ParityError(f"the loss must be a scalar; it has shape {shape} "
                          "(reduce it: .mean() or .sum())")


def torch_gradients(forward: Callable[[Any], Any], parameters: dict[str, Any], inputs: Any,
                    loss: Loss) -> Gradients:
    """`loss(forward(inputs))` and its gradients by torch autograd, with respect to the
    floating inputs and `parameters` (torch key -> parameter); the parameters' `.grad`s are
    left untouched. `inputs`: a tensor, or a dict of them (named inputs)."""
    import torch

    given = {key: value for key, value in _named(inputs).items()}
    floating = {key: value.detach().clone().requires_grad_(True)
                for key, value in given.items() if value.is_floating_point()}
    with torch.enable_grad():
        value = loss(forward(_unnamed(inputs, {**given, **floating})))
        scalar_loss(value)
        wanted = [*floating.values(), *parameters.values()]
        found = torch.autograd.grad(value, wanted, allow_unused=True)
    as_numpy = [np.zeros(tuple(tensor.shape), to_numpy(tensor.detach()).dtype) if grad is None
                else to_numpy(grad) for tensor, grad in zip(wanted, found, strict=True)]
    input_grads = dict(zip(floating, as_numpy[:len(floating)], strict=True))
    return Gradients(to_numpy(value.detach()), _unnamed(inputs, input_grads) if floating else None,
                     dict(zip(parameters, as_numpy[len(floating):], strict=True)))


class FlaxGradients:
    """The Flax side's loss and gradients, jitted once (and compiled once per input shape):
    `loss(outputs, weights)`, with respect to the floating inputs and the `params`
    collection, the parameters' gradients carried through `mapping` to torch keys and the
    inputs' to torch's layout (no mapping: a Flax function, whose `params` are empty).
    `weights`: what the loss takes besides the outputs (the default loss's projections;
    None for a user's loss)."""

    def __init__(self, apply: Callable[[Any, Any], Any], loss: Callable[[Any, Any], Any],
                 mapping: WeightMapping | None) -> None:
        import jax

        def objective(params: Any, floating: dict[str, Any], others: dict[str, Any],
                      given: dict[str, Any], weights: Any, named: bool) -> Any:
            inputs = {**given, **floating}
            return loss(apply({**others, "params": params},
                              inputs if named else inputs[_ONE]), weights)

        self._jitted = jax.jit(jax.value_and_grad(objective, argnums=(0, 1)),
                               static_argnames="named")
        self.apply, self.loss, self.mapping = apply, loss, mapping

    def __call__(self, variables: Mapping[str, Any], inputs: Any, weights: Any,
                 layout: Layout, input_rank: int) -> Gradients:
        """On placed jax inputs in Flax's layout (a dict of them for named inputs)."""
        given = _named(inputs)
        floating = {key: value for key, value in given.items() if _is_floating(value)}
        fixed = {key: value for key, value in given.items() if key not in floating}
        others = {key: value for key, value in variables.items() if key != "params"}
        value, (param_grads, input_grads) = self._jitted(
            variables["params"], floating, others, fixed, weights,
            named=isinstance(inputs, Mapping))
        return self._gradients(inputs, value, param_grads, input_grads, layout, input_rank)

    def _gradients(self, inputs: Any, value: Any, param_grads: Any, input_grads: Any,
                   layout: Layout, input_rank: int) -> Gradients:
        by_torch_key = {}
        if self.mapping is not None:  # else a function: no parameters
            canonical, _ = self.mapping.flax_to_canonical({"params": param_grads})
            by_torch_key = self.mapping.canonical_to_torch(canonical)
        moved = {key: layout.output_to_torch(np.asarray(grad), input_rank)
                 for key, grad in input_grads.items()}
        return Gradients(np.asarray(value), _unnamed(inputs, moved) if input_grads else None,
                         by_torch_key)

    def choices(self, variables: Mapping[str, Any], inputs: Any) -> list[Choice]:
        """The choices of the forward's non-smooth ops (pytest_parity.branches)."""
        import jax

        seen = Seen()
        _, arrays = jax.jit(recorded(self.apply, seen))(variables, inputs)
        return seen.choices(arrays)

    def pinned(self, variables: Mapping[str, Any], inputs: Any, weights: Any, layout: Layout,
               input_rank: int, pins: Sequence[np.ndarray]) -> tuple[Gradients, list[Choice]]:
        """As a call, the backward of each non-smooth op taken through `pins` (another run's
        choices); with this run's own choices."""
        import jax

        seen, named = Seen(), isinstance(inputs, Mapping)
        given = _named(inputs)
        floating = {key: value for key, value in given.items() if _is_floating(value)}
        fixed = {key: value for key, value in given.items() if key not in floating}
        others = {key: value for key, value in variables.items() if key != "params"}

        def objective(params: Any, floating: dict[str, Any], pins: Any) -> Any:
            inputs = {**fixed, **floating}
            outputs, own = pinned(self.apply, seen)({**others, "params": params},
                                                    inputs if named else inputs[_ONE], pins)
            return self.loss(outputs, weights), own

        (value, own), (param_grads, input_grads) = jax.jit(jax.value_and_grad(
            objective, argnums=(0, 1), has_aux=True))(variables["params"], floating,
                                                      list(pins))
        return (self._gradients(inputs, value, param_grads, input_grads, layout, input_rank),
                seen.choices(own))


_ONE = "input"  # the key of an input that is one array, not named inputs


def _named(inputs: Any) -> dict[str, Any]:
    return dict(inputs) if isinstance(inputs, Mapping) else {_ONE: inputs}


def _unnamed(inputs: Any, values: dict[str, Any]) -> Any:
    """`values` in the form `inputs` had: the one array, or the dict of named inputs."""
    return values if isinstance(inputs, Mapping) else values[_ONE]


def mapped_parameters(model: Any, mapping: WeightMapping | None) -> dict[str, Any]:
    """The torch model's parameters a Flax variable holds, by key: those the mapping ignores
    or keeps torch-only (a pooler the port lacks) have no Flax gradient to compare."""
    return {key: parameter for key, parameter in model.named_parameters()
            if mapping is None or ((rule := mapping.rule_for(key, "torch")) is not None
                                   and rule.collection is not None)}
