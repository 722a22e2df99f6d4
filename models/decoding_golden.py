"""The zoo decoders' golden tokens: transformers' torch model (the original implementation)
decoding 32 tokens greedily, with its KV cache, from three left-padded prompts, in float32 on
CPU, from seed 0's weights (the parity_pair fixture's checkpoint of the torch model's seeded
initialisation). Its `generate` chooses the same tokens (tests/unit/test_decoding.py).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import numpy as np

from pytest_parity import registry
from pytest_parity.decoders import TransformersTorch
from pytest_parity.golden import array_digest

CHECKPOINT_SEED = 0
PROMPT_SEED = 0
LENGTHS = (12, 7, 10)  # the acceptance's batch: three prompts of different lengths
STEPS = 32


def left_padded(vocab: int, lengths: tuple[int, ...] = LENGTHS, seed: int = PROMPT_SEED
                ) -> tuple[np.ndarray, np.ndarray]:
    """Token ids drawn from `seed` in [1, vocab) and their attention mask, each prompt
    right-aligned: its padding (token 0, mask 0) on the left."""
    rng = np.random.default_rng(seed)
    width = max(lengths)
    ids = np.zeros((len(lengths), width), np.int64)
    mask = np.zeros((len(lengths), width), np.int64)
    for row, length in enumerate(lengths):
        ids[row, width - length:] = rng.integers(1, vocab, length)
        mask[row, width - length:] = 1
    return ids, mask


def golden_prompts(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """The pair's golden prompts, their mask, and how they were made."""
    vocab = registry.get(name).inputs[0].high
    ids, mask = left_padded(vocab)
    return ids, mask, (f"numpy default_rng({PROMPT_SEED}) token ids in [1, {vocab}), prompts "
                       f"of {', '.join(map(str, LENGTHS))} tokens padded on the left to "
                       f"{max(LENGTHS)} (token 0, mask 0)")


def greedy_tokens(model: Any, ids: np.ndarray, mask: np.ndarray, steps: int) -> np.ndarray:
    """The torch model's greedy tokens, by transformers' decoding convention."""
    import torch

    decoder = TransformersTorch()
    with torch.no_grad():
        logits, state = decoder.start(model, torch.from_numpy(ids), torch.from_numpy(mask),
                                      ids.shape[1] + steps)
        tokens = [logits[:, -1].argmax(-1)]
        for _ in range(steps - 1):
            logits, state = decoder.step(model, state, tokens[-1])
            tokens.append(logits.argmax(-1))
    return torch.stack(tokens, 1).numpy()


def golden_outputs(name: str, model: Any, checkpoint: Any
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A loaded torch model's golden tokens for the pair `name`, and their provenance."""
    ids, mask, described = golden_prompts(name)
    manifest = {
        "source": f"transformers {version('transformers')} ({type(model).__name__}, the "
                  "original implementation), greedy, its KV cache",
        "torch": version("torch"), "device": "cpu", "dtype": "float32",
        "checkpoint": {"digest": checkpoint.digest(), "source": checkpoint.source},
        "outputs": {"tokens": {"input": described, "input_digest": array_digest(ids),
                               "attention_mask_digest": array_digest(mask),
                               "steps": STEPS}},
    }
    return {"tokens": greedy_tokens(model, ids, mask, STEPS)}, manifest


def compute(name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The pair's golden tokens from seed 0's checkpoint (`parity golden`)."""
    from pytest_parity.run import checkpoint_for, load_pair

    pair = registry.get(name)
    checkpoint = checkpoint_for(pair, CHECKPOINT_SEED, cache_dir=None)  # type: ignore[arg-type]
    return golden_outputs(name, load_pair(pair, checkpoint, "cpu", "float32").torch_model,
                          checkpoint)
