"""A Llama-style decoder: transformers' LlamaForCausalLM ported to Flax NNX (nnx_model.py),
its KV-cache decoder (decoding.py), its mapping (mapping.py) and the zoo's small seeded
configuration of both sides (small.py)."""
