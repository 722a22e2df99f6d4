"""torchvision ViT <-> canonical tree, for any configuration (the head count shapes attention).

torchvision keeps each block's query/key/value projections fused in one `in_proj_weight`
([3 * hidden, hidden], out x in); Flax's attention keeps them apart as [hidden, heads,
head_dim] kernels, and the output projection as [heads, head_dim, hidden].
"""

from pytest_parity.mapping import Mapping, Rule
from pytest_parity.transforms import OIHW_TO_HWIO, OUT_IN_TO_IN_OUT, Chain, Reshape, Split

BLOCK = "encoder.layers.encoder_layer_{i}"
CANONICAL_BLOCK = "encoder/layer{i}"
QKV = ("query", "key", "value")


def _layer_norm_rules(torch_prefix: str, canonical_prefix: str) -> list[Rule]:
    return [Rule(f"{canonical_prefix}/scale", f"{torch_prefix}.weight", "C"),
            Rule(f"{canonical_prefix}/bias", f"{torch_prefix}.bias", "C")]


def _linear_rules(torch_prefix: str, canonical_prefix: str) -> list[Rule]:
    return [Rule(f"{canonical_prefix}/kernel", f"{torch_prefix}.weight", "IO",
                 transform=OUT_IN_TO_IN_OUT),
            Rule(f"{canonical_prefix}/bias", f"{torch_prefix}.bias", "O")]


def _attention_rules(num_heads: int, hidden_dim: int) -> list[Rule]:
    heads = (num_heads, hidden_dim // num_heads)
    torch_prefix, canonical_prefix = f"{BLOCK}.self_attention", f"{CANONICAL_BLOCK}/attention"
    return [
        Rule(tuple(f"{canonical_prefix}/{part}/kernel" for part in QKV),
             f"{torch_prefix}.in_proj_weight", "IHD", split=Split(0, 3),
             transform=Chain((OUT_IN_TO_IN_OUT, Reshape(1, heads)))),
        Rule(tuple(f"{canonical_prefix}/{part}/bias" for part in QKV),
             f"{torch_prefix}.in_proj_bias", "HD", split=Split(0, 3),
             transform=Reshape(0, heads)),
        Rule(f"{canonical_prefix}/out/kernel", f"{torch_prefix}.out_proj.weight", "HDO",
             transform=Chain((OUT_IN_TO_IN_OUT, Reshape(0, heads)))),
        Rule(f"{canonical_prefix}/out/bias", f"{torch_prefix}.out_proj.bias", "O"),
    ]


def vit_mapping(architecture: str, *, num_heads: int, hidden_dim: int) -> Mapping:
    """The mapping of a torchvision VisionTransformer with the given attention shape."""
    return Mapping(architecture, (
        Rule("class_token", "class_token", "NTC"),
        Rule("conv_proj/kernel", "conv_proj.weight", "HWIO", transform=OIHW_TO_HWIO),
        Rule("conv_proj/bias", "conv_proj.bias", "O"),
        Rule("encoder/pos_embedding", "encoder.pos_embedding", "NTC"),
        *_layer_norm_rules(f"{BLOCK}.ln_1", f"{CANONICAL_BLOCK}/ln_1"),
        *_attention_rules(num_heads, hidden_dim),
        *_layer_norm_rules(f"{BLOCK}.ln_2", f"{CANONICAL_BLOCK}/ln_2"),
        *_linear_rules(f"{BLOCK}.mlp.0", f"{CANONICAL_BLOCK}/mlp/fc1"),
        *_linear_rules(f"{BLOCK}.mlp.3", f"{CANONICAL_BLOCK}/mlp/fc2"),
        *_layer_norm_rules("encoder.ln", "encoder/ln"),
        *_linear_rules("heads.head", "head"),
    ))
