"""How each side of a language-model pair decodes with its KV cache, for the decoding check
(pytest_parity.run.decoding).

A side's decoder is an object of four methods; the check drives both sides' decoders in step,
greedily, from the same prompts:

    inputs(input_ids, attention_mask)   the named inputs (numpy) of the side's uncached call
                                        over a whole sequence, position ids by the side's own
                                        convention where it takes them (for the diagnosis)
    start(model, ids, mask, max_length) the prompt's call, filling a cache that holds
                                        `max_length` positions: (logits (B, P, V), state)
    step(model, state, tokens)          one cached step: the tokens (B,) appended, attended to
                                        with mask 1: (logits (B, V), state)
    cache(state)                        what the cache holds, layer by layer, as numpy (its
                                        own dtype) in torch's layout: [(keys, values)], each
                                        (B, kv heads, T, head dim), T the positions written

torch: `model` is the torch model, the arrays torch tensors (ids and mask int64, on the
model's device), called under no_grad. Flax: `model` is (module, variables): the Linen module
and its variables, or the NNX module (holding the variables) and the same variables as
Linen-style dicts; `start` and `step` must be traceable (the check jits them: `start` once per
prompt shape, with `max_length` static, `step` once), their state a tree of arrays.

A port ships its own decoder (its sampler's prefill and step); transformers' causal language
models decode by one convention on each side, `TransformersTorch` and `TransformersFlax`
(position ids from the attention mask as its `generate` computes them: the running count of
kept tokens, padding at 1; a Flax cache written through its "cache" collection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pytest_parity.arrays import to_numpy


class Decoder(Protocol):
    def inputs(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, Any]: ...

    def start(self, model: Any, input_ids: Any, attention_mask: Any, max_length: int
              ) -> tuple[Any, Any]: ...

    def step(self, model: Any, state: Any, tokens: Any) -> tuple[Any, Any]: ...

    def cache(self, state: Any) -> list[tuple[np.ndarray, np.ndarray]]: ...


@dataclass(frozen=True)
class Decoding:
    """A pair's two decoders (`Pair(decoding=...)`, `pair_of(..., decoding=...)`)."""

    torch: Decoder
    flax: Decoder


def padded_positions(attention_mask: Any) -> Any:
    """Each token's position: the number of kept tokens before it (left padding does not
    count), padding at 1, as transformers' generate computes them (numpy or torch)."""
    counted = attention_mask.cumsum(-1) - 1
    if isinstance(counted, np.ndarray):
        return np.where(attention_mask == 0, 1, counted).astype(np.int64)
    return counted.masked_fill(attention_mask == 0, 1)


class TransformersTorch:
    """A transformers causal language model (torch): `past_key_values` (a DynamicCache),
    `position_ids` given, `.logits` out."""

    def inputs(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, Any]:
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "position_ids": padded_positions(attention_mask)}

    def start(self, model: Any, input_ids: Any, attention_mask: Any, max_length: int
              ) -> tuple[Any, Any]:
        positions = padded_positions(attention_mask)
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                    use_cache=True)
        return out.logits, (out.past_key_values, attention_mask, positions[:, -1:] + 1)

    def step(self, model: Any, state: Any, tokens: Any) -> tuple[Any, Any]:
        import torch

        cache, mask, position = state
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=position,
                    past_key_values=cache, use_cache=True)
        return out.logits[:, -1], (out.past_key_values, mask, position + 1)

    def cache(self, state: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        cache = state[0]
        layers = getattr(cache, "layers", None)
        pairs = ([(layer.keys, layer.values) for layer in layers] if layers is not None
                 else [(keys, values) for keys, values in cache])
        return [(_numpy(keys), _numpy(values)) for keys, values in pairs]


def _numpy(tensor: Any) -> np.ndarray:
    return to_numpy(tensor.detach().cpu())


class TransformersFlax:
    """A transformers Flax causal language model's module (FlaxGPT2LMHeadModule...): its
    "cache" collection (made by `init_cache=True`) written by each call, an attention mask of
    `max_length` positions (ones past the prompt: the cache's index masks what is unwritten,
    as its `generate` does), `position_ids` given."""

    def inputs(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, Any]:
        return TransformersTorch().inputs(input_ids, attention_mask)

    def _call(self, model: Any, cache: Any, ids: Any, mask: Any, positions: Any
              ) -> tuple[Any, Any]:
        module, variables = model
        out, written = module.apply({"params": variables["params"], "cache": cache},
                                    input_ids=ids, attention_mask=mask, position_ids=positions,
                                    deterministic=True, init_cache=False, return_dict=True,
                                    mutable=["cache"])
        return out.logits, written["cache"]

    def __init__(self) -> None:
        # By the module's id, with the module itself: an id is reused once its object is
        # gone (a pair in float32 after one in bfloat16 read the bfloat16 cache's dtypes).
        self._shapes: dict[tuple[int, int, int], tuple[Any, Any]] = {}

    def _cache_shapes(self, module: Any, batch: int, max_length: int) -> Any:
        """The cache collection's shapes, from `init(init_cache=True)` traced once per module
        and size and kept (a step traced again, e.g. by the diagnosis, initialises nothing)."""
        import jax
        import jax.numpy as jnp

        key = (id(module), batch, max_length)
        if key not in self._shapes or self._shapes[key][0] is not module:
            ids = jnp.ones((batch, max_length), "i4")
            self._shapes[key] = module, jax.eval_shape(lambda: module.init(
                jax.random.PRNGKey(0), ids, ids,
                jnp.broadcast_to(jnp.arange(max_length), (batch, max_length)),
                init_cache=True))["cache"]
        return self._shapes[key][1]

    def start(self, model: Any, input_ids: Any, attention_mask: Any, max_length: int
              ) -> tuple[Any, Any]:
        import jax
        import jax.numpy as jnp

        module, _ = model
        batch, length = input_ids.shape
        cache = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype),
                                       self._cache_shapes(module, batch, max_length))
        mask = jnp.ones((batch, max_length), "i4").at[:, :length].set(attention_mask)
        positions = jnp.where(attention_mask == 0, 1, jnp.cumsum(attention_mask, -1) - 1)
        logits, cache = self._call(model, cache, input_ids, mask, positions)
        return logits, {"cache": cache, "mask": mask, "next": positions[:, -1:] + 1,
                        "length": jnp.asarray(length)}

    def step(self, model: Any, state: Any, tokens: Any) -> tuple[Any, Any]:
        logits, cache = self._call(model, state["cache"], tokens[:, None], state["mask"],
                                   state["next"])
        return logits[:, -1], {**state, "cache": cache, "next": state["next"] + 1,
                               "length": state["length"] + 1}

    def cache(self, state: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each layer's cached_key and cached_value ((B, max_length, heads, head dim)), in
        torch's layout, the positions written."""
        import jax

        written = int(state["length"])
        found: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
        for path, leaf in jax.tree_util.tree_flatten_with_path(state["cache"])[0]:
            names = [str(getattr(part, "key", getattr(part, "idx", part))) for part in path]
            if names[-1] in ("cached_key", "cached_value"):
                where = tuple(int(n) if n.isdigit() else n for n in names[:-1])
                found.setdefault(where, {})[names[-1]] = np.asarray(
                    leaf).transpose(0, 2, 1, 3)[:, :, :written]
        return [(found[where]["cached_key"], found[where]["cached_value"])
                for where in sorted(found, key=_numbered)]


def _numbered(path: tuple[Any, ...]) -> list[str]:
    """A cache path's sort key: layer 10 after layer 9."""
    return [f"{part:09d}" if isinstance(part, int) else part for part in path]
