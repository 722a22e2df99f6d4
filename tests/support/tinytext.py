"""A registered text pair small enough for unit tests: named inputs (token ids, an attention
mask), an unsaved position buffer like BERT's, and an output dict like transformers' models."""

from __future__ import annotations

from pytest_parity.inputs import Input
from pytest_parity.mapping import Mapping
from pytest_parity.mapping.layer_rules import embedding_rules, linear_rules, norm_rules
from pytest_parity.registry import Pair, register

VOCAB, HIDDEN, LENGTH = 50, 8, 6

MAPPING = Mapping("tinytext", (
    *embedding_rules("embed", "embed"),
    *norm_rules("norm", "norm"),
    *linear_rules("dense", "dense"),
))

INPUTS = (Input("input_ids", (2, LENGTH), "int64", high=VOCAB),
          Input("attention_mask", (2, LENGTH), "int64", mask=True))


def torch_tinytext():
    import torch

    class TinyText(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(VOCAB, HIDDEN)
            self.norm = torch.nn.LayerNorm(HIDDEN)
            self.dense = torch.nn.Linear(HIDDEN, HIDDEN)
            # Kept, not saved: an older version's files still hold it (as BERT's do).
            self.register_buffer("position_ids", torch.arange(LENGTH)[None], persistent=False)

        def forward(self, input_ids, attention_mask):
            hidden = self.dense(self.norm(self.embed(input_ids)))
            weights = attention_mask[..., None].to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
            return {"last_hidden_state": hidden, "pooler_output": pooled}

    return TinyText()


def flax_tinytext(epsilon=1e-5):
    """The Flax port; `epsilon` other than torch's 1e-5 makes it a port with a bug."""
    import flax.linen as nn
    import jax.numpy as jnp

    class TinyText(nn.Module):
        dtype: jnp.dtype = jnp.float32

        @nn.compact
        def __call__(self, input_ids, attention_mask):
            hidden = nn.Embed(VOCAB, HIDDEN, dtype=self.dtype, name="embed")(input_ids)
            hidden = nn.LayerNorm(epsilon=epsilon, dtype=self.dtype, name="norm")(hidden)
            hidden = nn.Dense(HIDDEN, dtype=self.dtype, name="dense")(hidden)
            weights = attention_mask[..., None].astype(hidden.dtype)
            pooled = (hidden * weights).sum(1) / jnp.maximum(weights.sum(1), 1)
            return {"last_hidden_state": hidden, "pooler_output": pooled}

    return TinyText()


TINYTEXT = register(Pair("tinytext", torch_tinytext, flax_tinytext, MAPPING, inputs=INPUTS))
