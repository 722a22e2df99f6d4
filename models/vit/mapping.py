"""torchvision ViT <-> canonical tree, for any configuration (the head count shapes attention).

torchvision keeps each block's query/key/value projections fused in one `in_proj_weight`
([3 * hidden, hidden], out x in); Flax's attention keeps them apart as [hidden, heads,
head_dim] kernels, and the output projection as [heads, head_dim, hidden].
"""

from pytest_parity.mapping import Mapping, Rule
from pytest_parity.mapping.layer_rules import attention_rules, conv_rules, linear_rules, norm_rules

BLOCK = "encoder.layers.encoder_layer_{i}"
CANONICAL_BLOCK = "encoder/layer{i}"


def vit_mapping(architecture: str, *, num_heads: int, hidden_dim: int) -> Mapping:
    """The mapping of a torchvision VisionTransformer with the given attention shape."""
    return Mapping(architecture, (
        Rule("class_token", "class_token", "NTC"),
        *conv_rules("conv_proj", "conv_proj", bias=True),
        Rule("encoder/pos_embedding", "encoder.pos_embedding", "NTC"),
        *norm_rules(f"{BLOCK}.ln_1", f"{CANONICAL_BLOCK}/ln_1"),
        *attention_rules(f"{BLOCK}.self_attention", f"{CANONICAL_BLOCK}/attention",
                         num_heads=num_heads, embed_dim=hidden_dim),
        *norm_rules(f"{BLOCK}.ln_2", f"{CANONICAL_BLOCK}/ln_2"),
        *linear_rules(f"{BLOCK}.mlp.0", f"{CANONICAL_BLOCK}/mlp/fc1"),
        *linear_rules(f"{BLOCK}.mlp.3", f"{CANONICAL_BLOCK}/mlp/fc2"),
        *norm_rules("encoder.ln", "encoder/ln"),
        *linear_rules("heads.head", "head"),
    ))
