"""The rules of one layer of each kind: torch tensor names <-> Flax variable names, layouts.

Used by hand-written tables (models/*/mapping.py) and by the automatic matcher
(pytest_parity.mapping.automatic), so both produce the same rules for the same layer. Prefixes
may hold `{name}` placeholders (tables) or be concrete (the matcher).

    torch                               Flax                          canonical layout
    Conv2d.weight [O, I/g, kh, kw]      Conv kernel [kh, kw, I/g, O]  HWIO
    ConvTranspose2d.weight [I, O, kh, kw]  ConvTranspose kernel:
        transpose_kernel=True  [kh, kw, O, I]                         HWOI
        transpose_kernel=False [kh, kw, I, O], spatially flipped      HWIO
    Linear.weight [O, I]                Dense kernel [I, O]           IO
    Conv1D.weight [I, O] (transformers) FlaxConv1D kernel [O, I]      OI
    LayerNorm/GroupNorm weight, bias    scale, bias                   C
    BatchNorm weight, bias              params scale, bias            C
        running_mean, running_var       batch_stats mean, var         C
        num_batches_tracked             (torch only)                  scalar
    Embedding.weight [N, D]             Embed embedding [N, D]        ND
    MultiheadAttention in_proj_weight [3E, E]  query/key/value kernel [E, H, D]  IHD
        in_proj_bias [3E]               query/key/value bias [H, D]   HD
        out_proj.weight [E, E]          out kernel [H, D, E]          HDO
"""

from __future__ import annotations

from pytest_parity.mapping.rules import Rule
from pytest_parity.mapping.transforms import (
    OIHW_TO_HWIO,
    OUT_IN_TO_IN_OUT,
    Chain,
    Flip,
    Identity,
    Reshape,
    Split,
    Transpose,
)

QKV = ("query", "key", "value")


def _path(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def bias_rule(torch_prefix: str, canonical_prefix: str) -> Rule:
    return Rule(_path(canonical_prefix, "bias"), _key(torch_prefix, "bias"), "O")


def conv_rules(torch_prefix: str, canonical_prefix: str, *, bias: bool) -> list[Rule]:
    kernel = Rule(_path(canonical_prefix, "kernel"), _key(torch_prefix, "weight"), "HWIO",
                  transform=OIHW_TO_HWIO)
    return [kernel, bias_rule(torch_prefix, canonical_prefix)] if bias else [kernel]


def conv_transpose_rules(torch_prefix: str, canonical_prefix: str, *, bias: bool,
                         transpose_kernel: bool) -> list[Rule]:
    if transpose_kernel:  # lax flips the kernel and swaps its in/out axes itself
        kernel = Rule(_path(canonical_prefix, "kernel"), _key(torch_prefix, "weight"), "HWOI",
                      transform=OIHW_TO_HWIO)
    else:
        kernel = Rule(_path(canonical_prefix, "kernel"), _key(torch_prefix, "weight"), "HWIO",
                      transform=Chain((Transpose((2, 3, 0, 1)), Flip((0, 1)))))
    return [kernel, bias_rule(torch_prefix, canonical_prefix)] if bias else [kernel]


def linear_rules(torch_prefix: str, canonical_prefix: str, *, bias: bool = True,
                 torch_kernel: str = "OI", flax_kernel: str = "IO") -> list[Rule]:
    """A linear layer: torch's weight ('OI' as Linear keeps it, 'IO' as transformers' Conv1D
    does) to Flax's kernel ('IO' as Dense keeps it, 'OI' as transformers' FlaxConv1D does)."""
    transform = Identity() if torch_kernel == flax_kernel else OUT_IN_TO_IN_OUT
    kernel = Rule(_path(canonical_prefix, "kernel"), _key(torch_prefix, "weight"), flax_kernel,
                  transform=transform)
    return [kernel, bias_rule(torch_prefix, canonical_prefix)] if bias else [kernel]


def norm_rules(torch_prefix: str, canonical_prefix: str, *, scale: bool = True,
               bias: bool = True) -> list[Rule]:
    """LayerNorm and GroupNorm (the same two tensors on both sides)."""
    rules = []
    if scale:
        rules.append(Rule(_path(canonical_prefix, "scale"), _key(torch_prefix, "weight"), "C"))
    if bias:
        rules.append(Rule(_path(canonical_prefix, "bias"), _key(torch_prefix, "bias"), "C"))
    return rules


def batch_norm_rules(torch_prefix: str, canonical_prefix: str, *, affine: bool = True
                     ) -> list[Rule]:
    """torch BatchNorm's tensors; the running statistics are Flax `batch_stats`."""
    return [
        *(norm_rules(torch_prefix, canonical_prefix) if affine else []),
        Rule(_path(canonical_prefix, "mean"), _key(torch_prefix, "running_mean"), "C",
             "batch_stats"),
        Rule(_path(canonical_prefix, "var"), _key(torch_prefix, "running_var"), "C",
             "batch_stats"),
        Rule(_path(canonical_prefix, "num_batches_tracked"),
             _key(torch_prefix, "num_batches_tracked"), "scalar", collection=None),
    ]


def embedding_rules(torch_prefix: str, canonical_prefix: str) -> list[Rule]:
    return [Rule(_path(canonical_prefix, "embedding"), _key(torch_prefix, "weight"), "ND")]


def attention_rules(torch_prefix: str, canonical_prefix: str, *, num_heads: int,
                    embed_dim: int, bias: bool = True) -> list[Rule]:
    """torch MultiheadAttention (fused in_proj) <-> Flax MultiHeadDotProductAttention."""
    heads = (num_heads, embed_dim // num_heads)
    rules = [
        Rule(tuple(_path(canonical_prefix, f"{part}/kernel") for part in QKV),
             _key(torch_prefix, "in_proj_weight"), "IHD", split=Split(0, 3),
             transform=Chain((OUT_IN_TO_IN_OUT, Reshape(1, heads)))),
        Rule(_path(canonical_prefix, "out/kernel"), _key(torch_prefix, "out_proj.weight"),
             "HDO", transform=Chain((OUT_IN_TO_IN_OUT, Reshape(0, heads)))),
    ]
    if bias:
        rules += [
            Rule(tuple(_path(canonical_prefix, f"{part}/bias") for part in QKV),
                 _key(torch_prefix, "in_proj_bias"), "HD", split=Split(0, 3),
                 transform=Reshape(0, heads)),
            Rule(_path(canonical_prefix, "out/bias"), _key(torch_prefix, "out_proj.bias"), "O"),
        ]
    return rules
