"""Prompts for the decoding checks: a batch of different lengths, padded on the left."""

import numpy as np

LENGTHS = (12, 7, 10)  # the acceptance's batch of 3 prompts of different lengths


def left_padded(vocab: int, lengths: tuple[int, ...] = LENGTHS, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Token ids drawn from `seed` (B, max length) and their attention mask, each prompt
    right-aligned: its padding (token 0, mask 0) on the left."""
    rng = np.random.default_rng(seed)
    width = max(lengths)
    ids = np.zeros((len(lengths), width), np.int64)
    mask = np.zeros((len(lengths), width), np.int64)
    for row, length in enumerate(lengths):
        ids[row, width - length:] = rng.integers(1, vocab, length)
        mask[row, width - length:] = 1
    return ids, mask
