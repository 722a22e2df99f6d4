"""The zoo's small Llama: one configuration, both sides built from it (the pair `llama`).

transformers initialises Linear and Embedding weights at std 0.02 and RMSNorm weights at 1.
At std 0.02 the logits are nearly uniform (greedy decoding meets ties that float32 noise
breaks either way) and a weight of 1 hides an RMSNorm that multiplies by (1 + w) in place of w
no worse than any other; so the weights are drawn at std 0.2 and each RMSNorm weight around 1
(std 0.2), both from torch's seeded generator (the fixture seeds it before the factory runs).
Measured top-2 logit gaps: tests/zoo/test_llama.py.
"""

from __future__ import annotations

from typing import Any

SMALL_LLAMA = {"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "rms_norm_eps": 1e-6, "rope_theta": 10000.0}
INITIALIZER_RANGE = 0.2
NORM_WEIGHT_STD = 0.2


def torch_model(settings: dict[str, Any] = SMALL_LLAMA) -> Any:
    """transformers' LlamaForCausalLM of `settings` (SMALL_LLAMA's fields; eager attention,
    untied head), its weights drawn from torch's current generator."""
    import torch

    from pytest_parity.torchvision_compat import import_torchvision

    import_torchvision()  # transformers imports torchvision, broken on a CPU-only torch here
    import transformers

    config = transformers.LlamaConfig(
        **settings, max_position_embeddings=128, tie_word_embeddings=False,
        initializer_range=INITIALIZER_RANGE, attn_implementation="eager")
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.normal_(1.0, NORM_WEIGHT_STD)
    return model.eval()


def nnx_model() -> Any:
    """The NNX port of SMALL_LLAMA (its variables come from the checkpoint)."""
    from flax import nnx

    from models.llama.nnx_model import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(**SMALL_LLAMA), rngs=nnx.Rngs(0))
