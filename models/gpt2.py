"""transformers' GPT-2 (torch) against transformers' own Flax GPT-2: the zoo's second decoder
language model, a port this project did not write, decoded through transformers' conventions
on both sides (pytest_parity.decoders).

A small configuration drawn from the seed (the weights are the torch model's initialisation
under torch.manual_seed). Its initializer_range is 0.2, not GPT-2's 0.02: at 0.02 the logits
of a 2-layer model are nearly uniform (largest 0.95) and greedy decoding repeats one token per
prompt; at 0.2, 15-20 distinct tokens in 32 steps, top-two gaps median 0.37 (smallest 0.004),
measured on three prompts with transformers' generate.
"""

from __future__ import annotations

from typing import Any

GPT2_CONFIG = {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 211, "n_positions": 64,
               "initializer_range": 0.2}
PROMPTS = (3, 12)  # batch, prompt length of the pair's declared inputs


def transformers() -> Any:
    """transformers, imported after torchvision's CPU workaround (it imports torchvision)."""
    from pytest_parity import import_torchvision

    import_torchvision()
    import transformers

    return transformers


def config() -> Any:
    return transformers().GPT2Config(**GPT2_CONFIG, attn_implementation="eager")


def torch_gpt2() -> Any:
    return transformers().GPT2LMHeadModel(config())


def flax_gpt2() -> Any:
    """The Linen module of transformers' FlaxGPT2LMHeadModel (its parameters are not drawn:
    they come from the torch weights through the mapping)."""
    return transformers().FlaxGPT2LMHeadModel(config(), _do_init=False).module


def gpt2_mapping() -> Any:
    """The automatic mapping, traced on the pair's declared inputs."""
    import torch

    from pytest_parity import automatic_mapping, registry

    pair = registry.get("gpt2")
    args, kwargs = pair.flax_examples()
    torch_inputs = {name: torch.from_numpy(value)
                    for name, value in pair.example_inputs(0).items()}
    return automatic_mapping(torch_gpt2(), flax_gpt2(), *args, **kwargs,
                             torch_inputs=torch_inputs, torch_kwargs={"use_cache": False},
                             name="gpt2")
