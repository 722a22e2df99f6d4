"""The Llama port's own KV-cache decoding, by the protocol of pytest_parity.decoders.

The port's sampler keeps one cache of `max_length` positions per layer, (keys, values) each
(B, max_length, kv_heads, head_dim) in the module's compute dtype, and an attention mask of
`max_length` columns: the prompt's padding mask, then ones (the causal mask hides what is not
written yet). A token's position is the number of kept tokens before it, padding at 1
(positions_of, transformers' generate convention); the first step's position is the count of
the prompt's kept tokens, each step one more.

Imports numpy alone at load, so that the pairs module (models/registry.py) declares it
without importing jax.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def positions_of(attention_mask: Any) -> Any:
    """Each token's position: the kept tokens before it (left padding does not count),
    padding at 1. Written as arithmetic on a 0/1 mask so that numpy and jax arrays alike
    (traced ones too) take it."""
    counted = attention_mask.cumsum(-1) - 1
    return counted * attention_mask + (1 - attention_mask)


def advanced(positions: Any) -> Any:
    """The positions of the step after the one at `positions`."""
    return positions + 1


class LlamaDecoding:
    """The port's prefill and cached step (models.llama.nnx_model.LlamaForCausalLM)."""

    def inputs(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, Any]:
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "position_ids": np.asarray(positions_of(np.asarray(attention_mask)))}

    def start(self, model: Any, input_ids: Any, attention_mask: Any, max_length: int
              ) -> tuple[Any, Any]:
        """The prompt written at cache positions 0..P-1: (logits (B, P, V), state)."""
        import jax.numpy as jnp

        module, _ = model
        config = module.config
        batch, length = input_ids.shape
        shape = (batch, max_length, config.num_key_value_heads, config.head_dim)
        cache = [(jnp.zeros(shape, module.dtype), jnp.zeros(shape, module.dtype))
                 for _ in range(config.num_hidden_layers)]
        attention_mask = jnp.asarray(attention_mask, jnp.int32)
        mask = jnp.ones((batch, max_length), jnp.int32).at[:, :length].set(attention_mask)
        logits, cache = module(input_ids, attention_mask=mask,
                               position_ids=positions_of(attention_mask), cache=cache,
                               cache_index=jnp.asarray(0, jnp.int32))
        return logits, {"cache": cache, "mask": mask,
                        "next": attention_mask.sum(-1, keepdims=True),
                        "length": jnp.asarray(length, jnp.int32)}

    def step(self, model: Any, state: Any, tokens: Any) -> tuple[Any, Any]:
        """`tokens` (B,) written at cache position `length`: (logits (B, V), state)."""
        module, _ = model
        logits, cache = module(tokens[:, None], attention_mask=state["mask"],
                               position_ids=state["next"], cache=state["cache"],
                               cache_index=state["length"])
        return logits[:, -1], {**state, "cache": cache, "next": advanced(state["next"]),
                               "length": state["length"] + 1}

    def cache(self, state: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each layer's (keys, values) written so far, in the compute dtype and torch's layout
        (B, kv_heads, T, head_dim)."""
        written = int(state["length"])
        return [tuple(np.asarray(array).transpose(0, 2, 1, 3)[:, :, :written]
                      for array in layer) for layer in state["cache"]]
