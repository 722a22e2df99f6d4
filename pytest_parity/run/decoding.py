"""Decoding parity: both sides of a language-model pair decode greedily from the same prompts,
each with its own KV cache, and are compared at every step.

    the prompt's call         each side's logits at the prompt's last position: step 0
    a cached step, N - 1 times the token torch chose appended on both sides (a tie, where the
                              two sides' choices differ by no more than the tolerance, is
                              reported and decoding goes on from torch's token: both sides
                              always decode the same sequence; torch decodes first, the Flax
                              side is then fed its tokens)
    one call over everything  each side alone: the prompt and the N - 1 decoded tokens in one
                              call without a cache; its logits at each step's position and the
                              cache it writes must equal what the cached steps gave (cache
                              consistency: a rotary offset not advanced, a cache written at the
                              wrong index show here, on one side, before any comparison)

Compared, one comparison of many leaves: each step's logits (`logits/step_07`) and, at the
end, each layer's cache (`cache/<torch attention module>.key|value`, the positions the
attention mask keeps). In bfloat16/float16 the verdict is the budget's: both sides' one call
over everything again in float32 on the same rounded weights is each leaf's reference (one
call per side, not N). A failure names the first divergent step, and is diagnosed: the pair's
trace of that step's call without a cache (the prompt and the tokens before it), and where a
side's cached steps disagree with its own call over everything, the modules of that side
followed through the first such step (pytest_parity.run.decoding_trace).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_parity.compare import Comparison, compared
from pytest_parity.run.decoding_sides import FlaxSide, TorchSide
from pytest_parity.run.reference import precision

DEFAULT_STEPS = 32


@dataclass(frozen=True)
class Tie:
    """A step where the two sides chose different tokens whose logits are within the
    tolerance of each other on both sides: decoding went on from torch's."""

    step: int
    row: int
    torch_token: int
    flax_token: int
    gap: float  # the larger of the two sides' gaps between the two tokens' logits
    allowed: float


@dataclass(frozen=True)
class DecodingRun:
    """Both sides' figures from one decoding (numpy float32 logits)."""

    prompt_length: int
    tokens: np.ndarray  # (B, N): the tokens decoded, torch's choice at each step
    flax_tokens: np.ndarray  # (B, N): the Flax side's own choice at each step
    sequence: np.ndarray  # (B, P + N - 1): the prompt and the tokens fed back
    mask: np.ndarray  # the attention mask of `sequence`
    steps: dict[str, np.ndarray]  # side -> (B, N, V): each step's logits, cached
    caches: dict[str, dict[str, np.ndarray]]  # side -> key -> (B, H, T, D)
    whole: dict[str, np.ndarray]  # side -> (B, N, V): the one call's logits at each step
    whole_caches: dict[str, dict[str, np.ndarray]]
    compilations: int  # the Flax programs this decoding compiled


def step_key(step: int) -> str:
    return f"step_{step:02d}"


def cache_names(torch_model: Any) -> list[str]:
    """Each cache layer's torch name, in layer order: the attention module that writes it
    (transformers' attention modules carry their `layer_idx`); none found: `layers.<i>`."""
    found = {module.layer_idx: name for name, module in torch_model.named_modules()
             if isinstance(getattr(module, "layer_idx", None), int)}
    return [found[index] for index in sorted(found)]


def _named(cache: list[tuple[np.ndarray, np.ndarray]], names: list[str]
           ) -> dict[str, np.ndarray]:
    if len(cache) != len(names):
        names = [f"layers.{index}" for index in range(len(cache))]
    return {f"{name}.{part}": array for name, layer in zip(names, cache, strict=True)
            for part, array in zip(("key", "value"), layer, strict=True)}


def decoded(torch_side: TorchSide, flax_side: FlaxSide, input_ids: np.ndarray,
            attention_mask: np.ndarray, steps: int, names: list[str]) -> DecodingRun:
    """Greedy decoding of `steps` tokens by torch, the Flax side fed the same tokens, then
    each side's one call over the prompt and the tokens fed back.

    Torch's choices alone decide what both sides are fed, so torch decodes first and the Flax
    side then takes its steps, all dispatched before any is read back: the same calls as in
    lockstep, where the two frameworks took turns at every step (the tiny GPT-2's check, 32
    steps, medians of 15: 0.190 s in lockstep, 0.170 s so; 0.29 and 0.27 s with torch on two
    threads)."""
    batch, prompt = input_ids.shape
    max_length = prompt + steps
    torch_logits, chosen = torch_side.greedy(input_ids, attention_mask, steps)
    sequence = np.concatenate([input_ids, chosen[:, :-1]], 1).astype(np.int64)
    mask = np.concatenate([attention_mask, np.ones((batch, steps - 1), np.int64)], 1)
    at = prompt - 1 + np.arange(steps)
    caches = {"torch": _named(torch_side.cache(), names)}
    torch_whole, torch_whole_cache = torch_side.whole(sequence, mask)
    flax_logits = [flax_side.start(input_ids, attention_mask, max_length)[:, -1],
                   *flax_side.steps(chosen[:, :-1])]
    caches["flax"] = _named(flax_side.cache(), names)
    flax_whole, flax_whole_cache = flax_side.whole(sequence, mask)
    steps_logits = {"torch": np.stack(torch_logits, 1), "flax": np.stack(flax_logits, 1)}
    return DecodingRun(
        prompt, chosen, steps_logits["flax"].argmax(-1), sequence, mask, steps_logits, caches,
        {"torch": torch_whole[:, at], "flax": flax_whole[:, at]},
        {"torch": _named(torch_whole_cache, names), "flax": _named(flax_whole_cache, names)},
        flax_side.compilations)


def references(torch_side: TorchSide, flax_side: FlaxSide, reference_dtype: str,
               run: DecodingRun, names: list[str]
               ) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Each side's one call over everything in the reference precision (float32) on the
    case's rounded weights (the pair's reference sides): the budget's reference of every
    leaf."""
    at = run.prompt_length - 1 + np.arange(run.tokens.shape[1])
    torch_logits, torch_cache = torch_side.whole(run.sequence, run.mask)
    with precision(reference_dtype):
        flax_logits, flax_cache = flax_side.whole(run.sequence, run.mask)
    return {"torch": (torch_logits[:, at], _named(torch_cache, names)),
            "flax": (flax_logits[:, at], _named(flax_cache, names))}


def _tree(steps: np.ndarray, cache: dict[str, np.ndarray]) -> dict[str, Any]:
    return {"logits": {step_key(step): steps[:, step] for step in range(steps.shape[1])},
            "cache": cache}


def _cache_mask(run: DecodingRun, cache: dict[str, np.ndarray]) -> dict[str, Any]:
    """The cache positions attention uses (left padding is written but never read)."""
    kept = run.mask.astype(bool)
    return {"cache": {key: kept[:, None, :array.shape[2], None] for key, array in cache.items()}}


def comparisons(run: DecodingRun, refs: dict[str, Any] | None, tolerance: dict[str, float],
                name: str) -> tuple[Comparison, dict[str, Comparison]]:
    """The two sides against each other, and each side's cached steps against its own one call
    over everything (cache consistency)."""

    def reference(side: str) -> dict[str, Any] | None:
        return None if refs is None else _tree(*refs[side])

    cross = compared(
        _tree(run.steps["flax"], run.caches["flax"]), _tree(run.steps["torch"],
                                                            run.caches["torch"]),
        name=name, mask=_cache_mask(run, run.caches["torch"]),
        reference=None if refs is None else (reference("flax"), reference("torch")),
        **tolerance)
    consistency = {}
    for side in ("torch", "flax"):
        own = reference(side)
        consistency[side] = compared(
            _tree(run.steps[side], run.caches[side]),
            _tree(run.whole[side], run.whole_caches[side]),
            name=f"{name}: {side} cached steps against one call over the sequence",
            mask=_cache_mask(run, run.whole_caches[side]),
            reference=None if own is None else (own, own), **tolerance)
    return cross, consistency


def ties_and_misses(run: DecodingRun, cross: Comparison) -> tuple[list[Tie], list[Tie]]:
    """The steps where the sides chose differently: ties (the two tokens' logits within twice
    the step's element tolerance of each other on both sides: each side may be off by one
    tolerance) and misses (a token chosen by a clear margin on one side and not the other)."""
    results = {leaf.path: leaf for leaf in cross.leaves}
    ties: list[Tie] = []
    misses: list[Tie] = []
    for row, step in zip(*np.nonzero(run.tokens != run.flax_tokens), strict=True):
        torch_logits, flax_logits = run.steps["torch"][row, step], run.steps["flax"][row, step]
        ours, theirs = int(run.tokens[row, step]), int(run.flax_tokens[row, step])
        leaf = results[f"logits/{step_key(step)}"]
        scale = max(abs(float(torch_logits[ours])), abs(float(torch_logits[theirs])))
        allowed = 2 * (leaf.atol + leaf.rtol * scale)
        gap = max(float(torch_logits[ours] - torch_logits[theirs]),
                  float(flax_logits[theirs] - flax_logits[ours]))
        found = Tie(int(step), int(row), ours, theirs, gap, allowed)
        (ties if gap <= allowed else misses).append(found)
    return ties, misses


def first_failing_step(comparison: Comparison) -> int | None:
    steps = [int(leaf.path.rsplit("_", 1)[1]) for leaf in comparison.failing
             if leaf.path.startswith("logits/")]
    return min(steps, default=None)

