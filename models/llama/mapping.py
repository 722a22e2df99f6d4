"""transformers LlamaForCausalLM <-> the NNX port's variables (models/llama/nnx_model.py).

The port keeps transformers' module names, so each rule is the torch key with '/': Linear
weights ([out, in]) become kernels ([in, out]), the embedding table stays [vocab, hidden], an
RMSNorm's weight is `weight` on both sides. No biases anywhere; the rotary frequencies are a
buffer transformers does not save (`rotary_emb.inv_freq`, persistent=False), so nothing maps it.
"""

from pytest_parity.mapping import Mapping, Rule
from pytest_parity.mapping.layer_rules import embedding_rules, linear_rules

LAYER = "model.layers.{i}"
CANONICAL_LAYER = "model/layers/{i}"
PROJECTIONS = (*(f"self_attn.{name}" for name in ("q_proj", "k_proj", "v_proj", "o_proj")),
               *(f"mlp.{name}" for name in ("gate_proj", "up_proj", "down_proj")))
NORMS = ("input_layernorm", "post_attention_layernorm")


def _norm_rule(torch_prefix: str, canonical_prefix: str) -> Rule:
    return Rule(f"{canonical_prefix}/weight", f"{torch_prefix}.weight", "C")


RULES = (
    *embedding_rules("model.embed_tokens", "model/embed_tokens"),
    *(_norm_rule(f"{LAYER}.{norm}", f"{CANONICAL_LAYER}/{norm}") for norm in NORMS),
    *(rule for name in PROJECTIONS
      for rule in linear_rules(f"{LAYER}.{name}", f"{CANONICAL_LAYER}/{name.replace('.', '/')}",
                               bias=False)),
    _norm_rule("model.norm", "model/norm"),
    *linear_rules("lm_head", "lm_head", bias=False),
)


def llama_mapping(architecture: str) -> Mapping:
    """The mapping of a transformers LlamaForCausalLM with an untied head (any depth)."""
    return Mapping(architecture, RULES)
