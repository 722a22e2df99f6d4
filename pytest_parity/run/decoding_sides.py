"""Each side of a decoding check, driven through its decoder (pytest_parity.decoders): the
prompt's call, one cached step at a time, and a whole sequence in one call; logits and caches
come back as numpy in their own dtype.

The Flax side's calls are jitted once: the prompt's call once per prompt shape, the step once
(its state keeps its shapes from step to step), so N steps cost one compilation, not N; a pair
keeps its programs, so its next check on the same shapes compiles none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
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

    def greedy(self, input_ids: np.ndarray, attention_mask: np.ndarray, steps: int
               ) -> tuple[list[np.ndarray], np.ndarray]:
        """The prompt's call and `steps - 1` cached steps, each fed the token the step before
        chose (argmax: the first of equal largest logits, as numpy's), all under one no_grad
        with the tokens kept on the device: each step's logits (B, V), and the tokens chosen
        (B, steps)."""
        import torch

        with torch.no_grad():
            logits, self.state = self.decoder.start(
                self.model, self.tensor(input_ids), self.tensor(attention_mask),
                input_ids.shape[1] + steps)
            found = [logits[:, -1]]
            chosen = [found[-1].argmax(-1)]
            for _ in range(steps - 1):
                logits, self.state = self.decoder.step(self.model, self.state, chosen[-1])
                found.append(logits)
                chosen.append(logits.argmax(-1))
        return [as_float(step) for step in found], torch.stack(chosen, 1).cpu().numpy()

    def cache(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.decoder.cache(self.state)

    def whole(self, input_ids: np.ndarray, attention_mask: np.ndarray
              ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        return whole_sequence(self, input_ids, attention_mask)


def whole_sequence(side: Any, input_ids: np.ndarray, attention_mask: np.ndarray
                   ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """A whole sequence in one call of a side (its cache as long as it is): each position's
    logits, and the cache it writes. The side's decoding state is left as it was."""
    kept = side.state
    try:
        logits = side.start(input_ids, attention_mask, input_ids.shape[1])
        return logits, side.cache()
    finally:
        side.state = kept


def bound(module: Any, variables: Any) -> tuple[Any, Any]:
    """What a Flax decoder is given as its model: (the Linen module, its variables), or (the
    NNX module holding the variables, the same variables)."""
    if isinstance(module, NNXPort):
        return module.bound(variables), variables
    return module, variables


@dataclass
class FlaxPrograms:
    """One Flax module's decoding programs through one decoder, jitted: the prompt's call per
    cache length (and, as jit does, per prompt shape), the step once per state shape. A pair
    keeps its own (`LoadedPair.decoding_programs`, by `programs_for`), so that a second check on
    the same shapes compiles nothing: jitted afresh by each check, its three programs were traced
    (0.4 s) and compiled (1.0 s) again in every check on a GPT-2 of 2 layers, width 64: 1.4 s
    of a 2.1 s check (cProfile), where its decoding itself takes 0.05 s."""

    module: Any
    decoder: Decoder
    starts: dict[int, Callable[..., Any]] = field(default_factory=dict, repr=False)
    step: Callable[..., Any] | None = field(default=None, repr=False)

    def start_function(self, max_length: int) -> Callable[..., Any]:
        import jax

        if max_length not in self.starts:
            decoder, module = self.decoder, self.module
            self.starts[max_length] = jax.jit(
                lambda variables, ids, mask: decoder.start(bound(module, variables), ids, mask,
                                                           max_length))
        return self.starts[max_length]

    def step_function(self) -> Callable[..., Any]:
        import jax

        if self.step is None:
            decoder, module = self.decoder, self.module
            self.step = jax.jit(lambda variables, state, tokens: decoder.step(
                bound(module, variables), state, tokens))
        return self.step

    def compiled(self) -> int:
        """How many programs the step and the prompt's calls compiled so far."""
        jitted = [*self.starts.values(), *([self.step] if self.step else [])]
        return sum(function._cache_size() for function in jitted)  # type: ignore[attr-defined]


def programs_for(store: dict[Any, FlaxPrograms], module: Any, decoder: Decoder
                 ) -> FlaxPrograms:
    """The programs `store` keeps for this module and decoder (by identity: the programs hold
    both, so neither id is reused while they are kept), made on first use."""
    key = (id(module), id(decoder))
    if key not in store:
        store[key] = FlaxPrograms(module, decoder)
    return store[key]


@dataclass
class FlaxSide:
    """The Flax module decoding through its decoder with its programs: its own, or `shared`
    ones (a pair's, kept between its checks); `compilations` counts what this side compiled."""

    module: Any
    variables: Any
    decoder: Decoder
    device: str
    state: Any = None
    shared: InitVar[FlaxPrograms | None] = None
    programs: FlaxPrograms = field(init=False, repr=False)
    _compiled_before: int = field(init=False, repr=False)

    def __post_init__(self, shared: FlaxPrograms | None) -> None:
        self.programs = shared or FlaxPrograms(self.module, self.decoder)
        self._compiled_before = self.programs.compiled()

    def _placed(self, array: np.ndarray) -> Any:
        import jax

        return jax.device_put(np.asarray(array, np.int32), jax_device(self.device))

    @property
    def compilations(self) -> int:
        """How many programs the step and the prompt's calls compiled since this side was
        made (0 where the pair's earlier checks compiled them all)."""
        return self.programs.compiled() - self._compiled_before

    def start(self, input_ids: np.ndarray, attention_mask: np.ndarray, max_length: int
              ) -> np.ndarray:
        logits, self.state = self.programs.start_function(max_length)(
            self.variables, self._placed(input_ids), self._placed(attention_mask))
        return as_float(logits)

    def step(self, tokens: np.ndarray) -> np.ndarray:
        return as_float(self._step(tokens))

    def steps(self, tokens: np.ndarray) -> list[np.ndarray]:
        """The cached steps fed each column of `tokens` (B, S) in turn: each step's logits.
        Every step is dispatched before the first one's logits are read back, the tokens being
        known (decoding: torch's)."""
        logits = [self._step(tokens[:, column]) for column in range(tokens.shape[1])]
        return [as_float(step) for step in logits]

    def _step(self, tokens: np.ndarray) -> Any:
        logits, self.state = self.programs.step_function()(self.variables, self.state,
                                                           self._placed(tokens))
        return logits

    def cache(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return self.decoder.cache(self.state)

    def whole(self, input_ids: np.ndarray, attention_mask: np.ndarray
              ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        return whole_sequence(self, input_ids, attention_mask)
