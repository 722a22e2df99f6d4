"""A Llama-style decoder: transformers' LlamaForCausalLM ported to Flax NNX (nnx_model.py),
its KV-cache decoder (decoding.py), its mapping (mapping.py), the zoo's small seeded
configuration of both sides (small.py) and its 2.1 GB one for streamed parity, with its
checkpoint written tensor by tensor (big.py)."""
