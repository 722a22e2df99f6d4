"""A Flax module that cannot be traced on its pair's declared inputs is named with the line of
its own code where the error arose, and the error itself stays chained for its traceback."""

from pathlib import Path

import pytest

from pytest_parity.errors import ParityError
from pytest_parity.registry import Pair
from tests.support.tinytext import INPUTS, MAPPING, torch_tinytext

pytest.importorskip("flax")


def flax_with_a_shape_bug():
    import flax.linen as nn

    class Mismatched(nn.Module):
        @nn.compact
        def __call__(self, input_ids, attention_mask):
            hidden = nn.Embed(50, 8, name="embed")(input_ids)
            return hidden @ attention_mask  # the bug: (2, 6, 8) @ (2, 6)

    return Mismatched()


def _line_of(marker: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if marker in line)


def test_the_message_names_the_users_file_and_line_and_chains_the_error():
    from pytest_parity.checkpoint.convert import flax_spec

    pair = Pair("tinytext_shape_bug", torch_tinytext, flax_with_a_shape_bug, MAPPING,
                inputs=INPUTS)
    with pytest.raises(ParityError) as error:
        flax_spec(pair)
    message = str(error.value)
    assert message.startswith("[parity] pair 'tinytext_shape_bug' (input_ids (2, 6) int64")
    assert "Mismatched.init cannot run on the declared inputs" in message
    line = _line_of("# the bug:")
    assert message.endswith(f"\n  raised at tests/unit/test_init_error_location.py:{line} in "
                            "__call__: return hidden @ attention_mask  # the bug: (2, 6, 8) "
                            "@ (2, 6)")
    assert isinstance(error.value.__cause__, TypeError)
