"""What the decoding check costs (`LoadedPair.assert_decoding_close`, 32 steps) against the two
sides' own greedy decoding loops for the same prompts and steps: the zoo's tiny GPT-2
(models/gpt2.py) built with `pair_of` (transformers' GPT2LMHeadModel and FlaxGPT2LMHeadModel),
three prompts of 12, 7 and 10 tokens padded on the left (models/decoding_golden.py).

The loops are what a user's hand loop runs: torch through its decoder (the prompt's call, then
31 cached steps, argmax each step, under no_grad), then Flax through the same jitted prompt's
call and step (argmax on the host each step). Both are warm: the first round (untimed)
compiles, and the timed checks must compile nothing (the pair keeps its programs). The two take
turns, round by round (tests/support/alternating.py), so that a slower spell of a shared
machine weighs on both; the gates ([tool.parity] gates) hold the median check to 1.5x the
median loops, in float32 and in bfloat16 (docs/benchmarks.md: the figures, and why the tiny
model).

Each round runs both a little deeper in the Python stack than the one before. On Python 3.11
a loop whose calls go back and forth across the end of one of the interpreter's 16 KB stack
chunks maps and unmaps a chunk at every crossing (CPython gh-142183; a chunk is cached from
3.13 on, never in 3.11): measured 4 to 183 minor page faults per torch step by depth alone,
each step 3.4-5 ms. Where the two sides' model calls happened to sit decided the ratio
(1.04-1.13 under pytest, once 1.38; 1.27-1.6 in a plain script; the same code). Swept over
one chunk's worth of depths, both sides meet the boundary at every offset.
"""

import itertools

import numpy as np
import pytest

from models.decoding_golden import left_padded
from tests.support.alternating import seconds_alternately
from tests.support.gpt2_pair import gpt2_pair
from tests.support.requirements import require

pytest.importorskip("pytest_benchmark")
torch = pytest.importorskip("torch")
pytest.importorskip("flax")
require("transformers", "transformers is not installed: pip install -e '.[ports]'")

STEPS = 32
ROUNDS = 11
# Frames a round goes deeper: a frame of `_deeper` takes about 120 bytes of the stack on 3.11
# (15 slots), so 11 rounds walk about 16 KB, one stack chunk.
SWEEP = 12


def _deeper(frames, call):
    """`call()` run `frames` Python frames further down the stack."""
    return call() if frames == 0 else _deeper(frames - 1, call)


def _swept(call):
    """`call`, each time SWEEP frames deeper than the time before (the first at no depth)."""
    rounds = itertools.count()
    return lambda: _deeper(next(rounds) * SWEEP, call)


def _gpt2(dtype):
    from models.registry import GPT2_TOLERANCES

    return gpt2_pair(dtype, tolerances=GPT2_TOLERANCES)


def _own_loops(pair, ids, mask):
    """Each side's own greedy loop, torch's then Flax's: what the check is held against."""
    from pytest_parity.decoders import TransformersFlax, TransformersTorch
    from pytest_parity.run.decoding_sides import FlaxSide

    torch_decoder, max_length = TransformersTorch(), ids.shape[1] + STEPS
    flax_side = FlaxSide(pair.flax_model, pair.flax_variables, TransformersFlax(), pair.device)
    torch_ids, torch_mask = torch.as_tensor(ids), torch.as_tensor(mask)

    def loops():
        with torch.no_grad():
            logits, state = torch_decoder.start(pair.torch_model, torch_ids, torch_mask,
                                                max_length)
            tokens = [logits[:, -1].argmax(-1)]
            for _ in range(STEPS - 1):
                logits, state = torch_decoder.step(pair.torch_model, state, tokens[-1])
                tokens.append(logits.argmax(-1))
        flax_tokens = [flax_side.start(ids, mask, max_length)[:, -1].argmax(-1)]
        for _ in range(STEPS - 1):
            flax_tokens.append(flax_side.step(flax_tokens[-1]).argmax(-1))
        return torch.stack(tokens, 1).numpy(), np.stack(flax_tokens, 1)

    return loops


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_decoding_check_and_loops(benchmark, dtype):
    """One warm-up round, then ROUNDS rounds of (check, loops); the median of each kept.
    Untimed (--benchmark-disable, as in the test suite) one round: the check passes and both
    loops decode 32 tokens."""
    from models.gpt2 import GPT2_CONFIG

    ids, mask = left_padded(GPT2_CONFIG["vocab_size"])
    pair = _gpt2(dtype)
    loops = _own_loops(pair, ids, mask)
    results, decoded = [], []

    def check():
        results.append(pair.assert_decoding_close(ids, mask, steps=STEPS))

    benchmark.group = f"decoding GPT-2 {dtype}, {STEPS} steps"
    seconds = seconds_alternately(benchmark, {
        "check": _swept(check), "loops": _swept(lambda: decoded.append(loops()))}, ROUNDS)
    assert all(result.passed for result in results)
    assert [result.compilations for result in results[1:]] == [0] * (len(results) - 1)
    assert all(tokens.shape == (len(ids), STEPS) for tokens in decoded[-1])
    check_s, loops_s = (float(np.median(seconds[side])) for side in ("check", "loops"))
    benchmark.extra_info.update(check_s=check_s, loops_s=loops_s,
                                check_over_loops=check_s / loops_s,
                                first_check_compilations=results[0].compilations)
