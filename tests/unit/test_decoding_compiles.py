"""The decoding check compiles its Flax side once per shape, not once per step: as many programs
for 4 steps as for 32 (the prompt's call, the step, the call over the whole sequence), counted
both as the check reports them (`DecodingResult.compilations`, its jitted functions' caches)
and as jax lowers them (its monitoring events: a step jitted afresh at every step, whatever
keeps it, lowers once a step); and none at all when the pair checks the same shapes again."""

from contextlib import contextmanager

import pytest

from models.decoding_golden import left_padded
from tests.support.gpt2_pair import gpt2_pair
from tests.support.requirements import require

require("transformers", "transformers is not installed: pip install -e '.[text]'")
torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")

VOCAB = 211
# jax records this event each time it lowers a jitted function's trace to a program: once per
# jit cache miss, whether or not the persistent compilation cache then has the program.
LOWERED = "/jax/core/compile/jaxpr_to_mlir_module_duration"
# What a check compiles on shapes it has not seen: the prompt's call (its cache of prompt +
# steps positions), the cached step, and the call over the whole decoded sequence.
PROGRAMS = 3


@pytest.fixture
def gpt2():
    """A fresh pair: nothing of it compiled yet."""
    return gpt2_pair()


@contextmanager
def lowerings():
    """The names of the functions jax lowers inside the block."""
    found: list[str] = []

    def heard(event, _duration, **kwargs):
        if event == LOWERED:
            found.append(kwargs.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(heard)
    try:
        yield found
    finally:
        jax.monitoring.unregister_event_duration_listener(heard)


def _checked(pair, steps):
    ids, mask = left_padded(VOCAB)
    with lowerings() as lowered:
        result = pair.assert_decoding_close(ids, mask, steps=steps)
    return result.compilations, len(lowered)


def test_as_many_programs_for_4_steps_as_for_32(gpt2):
    compiled_32, lowered_32 = _checked(gpt2, 32)
    compiled_4, lowered_4 = _checked(gpt2, 4)  # new lengths: each program compiled anew
    assert compiled_32 == compiled_4 == PROGRAMS
    assert lowered_32 == lowered_4 == PROGRAMS


def test_the_same_shapes_again_compile_nothing(gpt2):
    _checked(gpt2, 8)
    assert _checked(gpt2, 8) == (0, 0)
