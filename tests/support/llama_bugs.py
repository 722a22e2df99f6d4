"""Porting bugs of a Llama-style decoder, injected into the zoo's NNX port (models/llama/).

Each bug swaps one of the port's named conventions (a module-level function of
models.llama.nnx_model or models.llama.decoding) for a plausible wrong one, inside
`with llama_bug(name):`, and restores it on leaving. A jitted function traced inside the block
sees the bug; one traced before it does not (jit anew inside).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

from models.llama import decoding, nnx_model

_rms_norm = nnx_model.rms_norm
_attention_allowed = nnx_model.attention_allowed
_write_cache = nnx_model.write_cache


def _interleaved_rotary(x: Any, cos: Any, sin: Any) -> Any:
    half = x.shape[-1] // 2
    cos, sin = (jnp.repeat(angle[..., :half], 2, axis=-1)[:, :, None] for angle in (cos, sin))
    pairs = x.reshape(*x.shape[:-1], half, 2)
    turned = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)
    return x * cos + turned * sin


def _arange_positions(attention_mask: Any) -> Any:
    return attention_mask * 0 + np.arange(attention_mask.shape[-1])


class Injection(NamedTuple):
    description: str
    module: ModuleType
    attribute: str
    replacement: Callable[..., Any]


INJECTIONS = {
    "rotary_interleaved": Injection(
        "rotary embeddings turn dimensions (2i, 2i+1) together (the interleaved pairing), "
        "not transformers' halves (i, i + D/2)", nnx_model, "apply_rotary", _interleaved_rotary),
    "rotary_not_advanced": Injection(
        "the decoder's steps all take the first step's position (never advanced)",
        decoding, "advanced", lambda positions: positions),
    "rms_norm_one_plus_weight": Injection(
        "RMSNorm multiplies by (1 + w) (Gemma's convention), not w", nnx_model, "rms_norm",
        lambda x, weight, epsilon: _rms_norm(x, 1 + weight, epsilon)),
    "kv_heads_tiled": Injection(
        "query head h reads kv head h % kv_heads (jnp.tile), not h // (heads // kv_heads) "
        "(repeat_kv)", nnx_model, "repeat_kv",
        lambda x, groups: jnp.tile(x, (1, 1, groups, 1))),
    "causal_mask_off_by_one": Injection(
        "the query at cache position q also sees the key at q + 1", nnx_model,
        "attention_allowed", lambda queries, key_mask: _attention_allowed(queries + 1, key_mask)),
    "cache_written_late": Injection(
        "each call's keys and values are written at cache_index + 1", nnx_model, "write_cache",
        lambda cache, new, index: _write_cache(cache, new, index + 1)),
    "positions_ignore_padding": Injection(
        "positions_of counts padding (arange over the row): a left-padded prompt sits later "
        "than the steps that follow it", decoding, "positions_of", _arange_positions),
}
BUGS = {name: injection.description for name, injection in INJECTIONS.items()}


@contextmanager
def llama_bug(name: str) -> Iterator[None]:
    """The NNX Llama port with the bug `name` (one of BUGS) while the block runs."""
    injection = INJECTIONS[name]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(injection.module, injection.attribute, injection.replacement)
        yield
