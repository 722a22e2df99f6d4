"""The zoo's Llama-style decoder: transformers' LlamaForCausalLM against its Flax NNX port
(models/llama/), registered as `llama`, forward and KV-cache decoding.

The forward pair is held to its float32 tolerance (models/registry.py) and to bfloat16's
error budget, on drawn tokens and on left-padded prompts; each side's cached greedy decoding
(the port's own LlamaDecoding, transformers' through pytest_parity.decoders.TransformersTorch)
gives at every step the logits of an uncached forward over the prefix; each of the porting
bugs of tests/support/llama_bugs.py changes the port's decoded logits. Measured figures (CPU,
seed 0) are in the tests' docstrings. The pair's decoding check, both sides in step
(assert_decoding_close), is in tests/zoo/test_decoding_zoo.py.
"""

import numpy as np
import pytest

from models.llama.decoding import LlamaDecoding, positions_of
from pytest_parity import assert_close, registry
from tests.support.requirements import require

NAME = "llama"
DRAW = 0  # the drawn batch: Pair.example_inputs(DRAW), 3 x 12 tokens, padding at the end
STEPS = 8
# Three prompts of 4, 7 and 6 tokens, left-padded to 7 as a tokenizer pads for generation.
PROMPT_MASK = np.array([[0, 0, 0, 1, 1, 1, 1],
                        [1, 1, 1, 1, 1, 1, 1],
                        [0, 1, 1, 1, 1, 1, 1]])

require("transformers", "transformers is not installed: pip install -e '.[text]'")

# The main job checks the pair by its decoding (tests/zoo/test_decoding_zoo.py); these run in
# the suite (--zoo=all, the default).
pytestmark = pytest.mark.zoo_all


def _prompts():
    ids = np.random.default_rng(7).integers(0, 256, PROMPT_MASK.shape)
    return ids, PROMPT_MASK


def _kept(mask):
    return {"logits": mask}


def test_the_mapping_pairs_every_tensor_with_one_parameter_count():
    """Each torch tensor is one NNX variable of its shape (Linear weights transposed), and
    both sides hold 106,816 parameters: embedding and head 2 x 256 x 64; each of 2 layers
    36,992 (q, o 64 x 64; k, v 64 x 32, 2 kv heads of 16; gate, up, down 64 x 128; two norms
    of 64); the final norm 64. (The automatic mapping finds the same pairs, 2.8 s to trace.)"""
    import math

    import torch

    from pytest_parity.checkpoint.convert import flax_spec

    pair = registry.get(NAME)
    with torch.device("meta"):
        state = pair.torch_model().state_dict()
    shapes = {key: tuple(tensor.shape) for key, tensor in state.items()}
    flax = {path: tuple(spec.shape) for path, spec in flax_spec(pair).items()}
    mapped = {paths[0]: shapes[key][::-1] if layout == "IO" else shapes[key]
              for key, (paths, layout, *_) in pair.mapping.correspondence(shapes).items()}
    assert mapped == flax
    assert sum(map(math.prod, shapes.values())) == sum(map(math.prod, flax.values())) == 106_816


@pytest.mark.parity(dtypes=["float32", "bfloat16"])
def test_torch_and_nnx_logits_agree_on_drawn_tokens(parity_pair, parity_dtype):
    """float32: max abs 4.8e-6 on kept tokens' logits (of up to 5.9; margin 0.11 against the
    pair's tolerance, 0.39 against the defaults). bfloat16 by its error budget: max abs 0.12,
    cross rms 0.0228 against torch's own drift 0.0208 (ratio 1.09; the budget's factor is 2;
    margin 0.37). The top two logits of a kept position lie 0.009 to 2.6 apart over draws 0-4
    (5th percentile 0.042, median 0.42): far above float32's noise, so greedy decoding meets
    no tie."""
    pair = parity_pair(NAME)
    inputs = pair.example_inputs(DRAW)
    result = pair.assert_close(inputs, mask=_kept(inputs["attention_mask"]), name=f"{NAME} logits")
    assert {str(side["logits"].dtype) for side in (result.torch, result.flax)} == {parity_dtype}
    if parity_dtype == "float32":
        ordered = np.sort(result.torch["logits"], axis=-1)
        gaps = (ordered[..., -1] - ordered[..., -2])[inputs["attention_mask"] == 1]
        assert gaps.min() > 1e-3 and np.median(gaps) > 0.1, (gaps.min(), np.median(gaps))


@pytest.mark.parity(dtypes=["float32", "bfloat16"])
def test_left_padded_prompts_agree_where_kept(parity_pair):
    """Positions counted from the mask (padding at 1). float32: max abs 5.7e-6 (margin 0.13;
    0.46 against the defaults); bfloat16 0.09, within its budget (margin 0.24)."""
    ids, mask = _prompts()
    inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions_of(mask)}
    parity_pair(NAME).assert_close(inputs, mask=_kept(mask), name=f"{NAME} left-padded")


def _port(pair):
    """The NNX module holding the loaded pair's variables."""
    return pair.flax_model.bound(pair.flax_variables)


def _nnx_greedy(module, ids, mask, steps=STEPS):
    """The port's LlamaDecoding from the prompt, greedily, its start and step jitted with the
    weights as arguments: the tokens chosen (B, steps), the logits of the prompt's last
    position and of each step (B, steps + 1, V), and the cache. Jitted anew each call, so that
    a bug injected around it is traced (0.6 s a compilation here; with the weights as
    constants, or start and steps in one scan, compiling took twice as long)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    decoder = LlamaDecoding()
    graphdef, weights = nnx.split(module)
    max_length = ids.shape[1] + steps

    def start(weights, ids, mask):
        return decoder.start((nnx.merge(graphdef, weights), None), ids, mask, max_length)

    def step(weights, state, tokens):
        return decoder.step((nnx.merge(graphdef, weights), None), state, tokens)

    start, step = jax.jit(start), jax.jit(step)
    logits, state = start(weights, jnp.asarray(ids), jnp.asarray(mask))
    chosen, logits = [], [logits[:, -1]]
    for _ in range(steps):
        chosen.append(jnp.argmax(logits[-1], axis=-1))
        next_logits, state = step(weights, state, chosen[-1])
        logits.append(next_logits)
    return np.stack(chosen, 1), np.stack(logits, 1), decoder.cache(state)


def _extended(ids, mask, chosen):
    return np.concatenate([ids, chosen], 1), np.concatenate([mask, np.ones_like(chosen)], 1)


@pytest.mark.parity(devices=["cpu"], dtypes=["float32"])
def test_the_ports_cached_decoding_equals_its_uncached_forward(parity_pair):
    """The prompt's last logits and each of 8 greedy steps', from a jitted start and step,
    against one uncached forward over prompt and chosen tokens: max abs 5.2e-6 (logits of up
    to 7.4; margin 0.40)."""
    import jax

    module = _port(parity_pair(NAME))
    ids, mask = _prompts()
    chosen, stepped, cache = _nnx_greedy(module, ids, mask)
    full_ids, full_mask = _extended(ids, mask, chosen)
    full = jax.jit(module)(full_ids, attention_mask=full_mask,
                           position_ids=positions_of(full_mask))["logits"]
    expected = np.asarray(full)[:, ids.shape[1] - 1:]
    assert_close(stepped, expected, name=f"{NAME} port: cached steps vs uncached")
    assert [layer[0].shape for layer in cache] == [(3, 2, ids.shape[1] + STEPS, 16)] * 2


@pytest.mark.parity(devices=["cpu"], dtypes=["float32"])
def test_transformers_cached_decoding_equals_its_uncached_forward(parity_pair):
    """The torch decoder's convention (position ids from padded_positions, a DynamicCache),
    fed the port's greedy tokens (torch's own greedy choice is the same): each step's logits
    against torch's uncached forward, max abs 6.9e-6 (margin 0.58). Against the port's steps
    7.8e-6 (margin 0.76 at the defaults: two frameworks' rounding over 8 steps, so held to
    twice that); the two caches, padding positions included, 4.7e-6 apart."""
    import torch

    from pytest_parity.decoders import TransformersTorch, padded_positions

    pair = parity_pair(NAME)
    ids, mask = _prompts()
    chosen, port_steps, port_cache = _nnx_greedy(_port(pair), ids, mask)
    decoder, model = TransformersTorch(), pair.torch_model
    with torch.no_grad():
        logits, state = decoder.start(model, torch.as_tensor(ids), torch.as_tensor(mask),
                                      ids.shape[1] + STEPS)
        stepped = [logits[:, -1]]
        for index in range(STEPS):
            logits, state = decoder.step(model, state, torch.as_tensor(chosen[:, index]))
            stepped.append(logits)
        full_ids, full_mask = (torch.as_tensor(array) for array in _extended(ids, mask, chosen))
        full = model(input_ids=full_ids, attention_mask=full_mask,
                     position_ids=padded_positions(full_mask), use_cache=False).logits
    stepped = torch.stack(stepped, 1).numpy()
    assert_close(stepped, full[:, ids.shape[1] - 1:],
                 name=f"{NAME} torch: cached steps vs uncached")
    assert_close(port_steps, stepped, atol=2e-5, name=f"{NAME} cached steps: port vs torch")
    assert_close(port_cache, decoder.cache(state), name=f"{NAME} caches: port vs torch")


@pytest.mark.parity(devices=["cpu"], dtypes=["float32"])
def test_every_injected_bug_changes_the_decoded_logits(parity_pair):
    """Each bug of tests/support/llama_bugs.py, injected into the port, moves its greedy
    decoding of the left-padded prompts (the prompt's last logits and 8 steps') by more than
    1e-3 somewhere, and is gone on leaving its block. Measured max abs change: 7.3 to 13.4
    (every bug changes a greedy token). Positions that ignore the padding matter only because
    the steps count kept tokens: shifting a row's prompt and steps alike changes nothing in
    a rotary model (measured 7.3e-6, rounding)."""
    from tests.support.llama_bugs import INJECTIONS, llama_bug

    module = _port(parity_pair(NAME))
    ids, mask = _prompts()
    _, clean, _ = _nnx_greedy(module, ids, mask)
    changes = {}
    for bug, injection in INJECTIONS.items():
        original = getattr(injection.module, injection.attribute)
        with llama_bug(bug):
            _, buggy, _ = _nnx_greedy(module, ids, mask)
        assert getattr(injection.module, injection.attribute) is original
        changes[bug] = float(np.abs(buggy - clean).max())
    assert {bug: change for bug, change in changes.items() if not change > 1e-3} == {}, changes
