"""Each side of a decoding check, driven through its decoder (pytest_parity.decoders): the
prompt's call, one cached step at a time, and a whole sequence in one call; logits and caches
come back as numpy in their own dtype.

The Flax side's calls are jitted once: the prompt's call once per prompt shape, the step once
(its state keeps its shapes from step to step), so N steps cost one compilation, not N.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_parity.arrays import to_numpy
from pytest_parity.decoders import Decoder
from pytest_parity.devices import jax_device, torch_device
from pytest_parity.nnx_bridge import NNXPort


def as_float(array: Any) -> np.ndarray:
    """Logits as numpy in their own dtype (bfloat16 through ml_dtypes), from torch or jax:
    the comparison judges them by it."""
    return to_numpy(array.detach().cpu() if hasattr(array, "detach") else array)


@dataclass
class TorchSide:
    """The torch model decoding through its decoder, on `device`, under no_grad."""

    model: Any
    decoder: Decoder
    device: str
    state: Any = None

    def tensor(self, array: np.ndarray) -> Any:
        """Token ids or a mask as an int64 tensor on the side's device."""
        import torch

        return torch.as_tensor(np.asarray(array, np.int64), device=torch_device(self.device))

    def start(self, input_ids: np.ndarray, attention_mask: np.ndarray, max_length: int
              ) -> np.ndarray:
        import torch

        with torch.no_grad():
            logits, self.state = self.decoder.start(self.model, self.tensor(input_ids),
                                                    self.tensor(attention_mask), max_length)
        return as_float(logits)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            logits, self.state = self.decoder.step(self.model, self.state, self.tensor(tokens))
        return as_float(logits)

    def cache(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.decoder.cache(self.state)

    def whole(self, input_ids: np.ndarray, attention_mask: np.ndarray
              ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """A whole sequence in one call (its cache as long as it is): each position's logits,
        and the cache it writes. The side's decoding state is left as it was."""
        kept = self.state
        try:
            logits = self.start(input_ids, attention_mask, input_ids.shape[1])
            return logits, self.cache()
        finally:
            self.state = kept


def bound(module: Any, variables: Any) -> tuple[Any, Any]:
    """What a Flax decoder is given as its model: (the Linen module, its variables), or (the
    NNX module holding the variables, the same variables)."""
    if isinstance(module, NNXPort):
        return module.bound(variables), variables
    return module, variables


@dataclass
class FlaxSide:
    """The Flax module decoding through its decoder: `start` jitted per prompt shape and
    cache length, `step` jitted once."""

    module: Any
    variables: Any
    decoder: Decoder
    device: str
    state: Any = None
    _starts: dict[int, Callable[..., Any]] = field(default_factory=dict, repr=False)
    _step: Callable[..., Any] | None = field(default=None, repr=False)

    def _placed(self, array: np.ndarray) -> Any:
        import jax

        return jax.device_put(np.asarray(array, np.int32), jax_device(self.device))

    def _start_function(self, max_length: int) -> Callable[..., Any]:
        import jax

        if max_length not in self._starts:
            decoder, module = self.decoder, self.module
            self._starts[max_length] = jax.jit(
                lambda variables, ids, mask: decoder.start(bound(module, variables), ids, mask,
                                                           max_length))
        return self._starts[max_length]

    @property
    def step_function(self) -> Callable[..., Any]:
        import jax

        if self._step is None:
            decoder, module = self.decoder, self.module
            self._step = jax.jit(lambda variables, state, tokens: decoder.step(
                bound(module, variables), state, tokens))
        return self._step

    @property
    def compilations(self) -> int:
        """How many programs the step and the prompt's calls compiled so far."""
        jitted = [*self._starts.values(), *([self._step] if self._step else [])]
        return sum(function._cache_size() for function in jitted)  # type: ignore[attr-defined]

    def start(self, input_ids: np.ndarray, attention_mask: np.ndarray, max_length: int
              ) -> np.ndarray:
        logits, self.state = self._start_function(max_length)(
            self.variables, self._placed(input_ids), self._placed(attention_mask))
        return as_float(logits)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        logits, self.state = self.step_function(self.variables, self.state, self._placed(tokens))
        return as_float(logits)

    def cache(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.decoder.cache(self.state)

    def whole(self, input_ids: np.ndarray, attention_mask: np.ndarray
              ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """As TorchSide.whole."""
        kept = self.state
        try:
            logits = self.start(input_ids, attention_mask, input_ids.shape[1])
            return logits, self.cache()
        finally:
            self.state = kept
