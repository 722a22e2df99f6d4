"""transformers' GPT-2 against its Flax GPT-2 through `pair_of`, as a user checks a port they
did not write: the zoo's tiny configuration (models/gpt2.py), nothing registered."""

from typing import Any

PROMPTS = (3, 12)


def gpt2_pair(dtype: str = "float32", **options: Any) -> Any:
    """A fresh pair (nothing of it compiled), torch's weights from torch.manual_seed(0)."""
    import torch

    from models.gpt2 import GPT2_CONFIG, config, transformers
    from pytest_parity import Input, pair_of

    torch.manual_seed(0)
    library = transformers()
    inputs = (Input("input_ids", PROMPTS, "int64", high=GPT2_CONFIG["vocab_size"]),
              Input("attention_mask", PROMPTS, "int64", mask=True),
              Input("position_ids", PROMPTS, "int64", high=GPT2_CONFIG["n_positions"]))
    return pair_of(library.GPT2LMHeadModel(config()),
                   library.FlaxGPT2LMHeadModel(config(), _do_init=False).module,
                   inputs=inputs, torch_call={"use_cache": False}, dtype=dtype,
                   name="gpt2-tiny", **options)
