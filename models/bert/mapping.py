"""transformers BertModel <-> canonical tree, for any depth (the Flax BERT's variable tree).

transformers keys `encoder.layer.{i}.attention.self.query.weight`; the canonical tree names
it `encoder/layer{i}/attention/query/kernel`. Query, key and value stay separate Dense layers
on both sides ([hidden, hidden] kernels; the Flax module splits heads after the product).
`embeddings.position_ids` needs no entry: transformers keeps it as a buffer it no longer saves;
the files of older versions (all-MiniLM-L6-v2's model.safetensors) that hold it have it left
out by the conversion, as any unsaved buffer (pytest_parity.checkpoint.convert.stale_keys).
"""

from pytest_parity.mapping import Mapping
from pytest_parity.mapping.layer_rules import embedding_rules, linear_rules, norm_rules

LAYER = "encoder.layer.{i}"
CANONICAL_LAYER = "encoder/layer{i}"

RULES = (
    *embedding_rules("embeddings.word_embeddings", "embeddings/word_embeddings"),
    *embedding_rules("embeddings.position_embeddings", "embeddings/position_embeddings"),
    *embedding_rules("embeddings.token_type_embeddings", "embeddings/token_type_embeddings"),
    *norm_rules("embeddings.LayerNorm", "embeddings/layer_norm"),
    *(rule for part in ("query", "key", "value")
      for rule in linear_rules(f"{LAYER}.attention.self.{part}",
                               f"{CANONICAL_LAYER}/attention/{part}")),
    *linear_rules(f"{LAYER}.attention.output.dense", f"{CANONICAL_LAYER}/attention/output"),
    *norm_rules(f"{LAYER}.attention.output.LayerNorm", f"{CANONICAL_LAYER}/attention_layer_norm"),
    *linear_rules(f"{LAYER}.intermediate.dense", f"{CANONICAL_LAYER}/intermediate/dense"),
    *linear_rules(f"{LAYER}.output.dense", f"{CANONICAL_LAYER}/output"),
    *norm_rules(f"{LAYER}.output.LayerNorm", f"{CANONICAL_LAYER}/output_layer_norm"),
    *linear_rules("pooler.dense", "pooler/dense"),
)


def bert_mapping(architecture: str) -> Mapping:
    """The mapping of a transformers BertModel with its pooler (any number of layers)."""
    return Mapping(architecture, RULES)
