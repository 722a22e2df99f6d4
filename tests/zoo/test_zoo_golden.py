"""torchvision (drift of the original) and the Flax port, each held to the golden logits.

torchvision's logits go through the `parity_golden` fixture (review semantics: a missing golden is
written and fails, `--parity-update-golden` rewrites and fails, CI never writes); the Flax
port is only ever compared with them.
"""

import numpy as np
import pytest

from models.golden import CHECKPOINT_SEED, golden_inputs, torchvision_outputs
from models.registry import PARAM_COUNTS
from pytest_parity import assert_close

pytest.importorskip("matplotlib")


def _top(logits, k):
    return np.argsort(-logits, axis=-1)[:, :k].tolist()


@pytest.mark.parity(devices=["cpu"], dtypes=["float32"])  # the goldens are float32 CPU logits
@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))  # every zoo model
def test_torchvision_and_flax_match_the_golden_logits(parity_pair, parity_seed, parity_golden,
                                                      name):
    if parity_seed != CHECKPOINT_SEED:
        pytest.skip(f"the goldens are computed from seed {CHECKPOINT_SEED}'s checkpoint; "
                    f"this run uses --parity-seed={parity_seed}")
    pair = parity_pair(name)
    tolerance = pair.pair.tolerance("float32")
    outputs, manifest = torchvision_outputs(name, pair.torch_model, pair.checkpoint)
    parity_golden.check(outputs, name=name, manifest=manifest, **tolerance)
    expected = parity_golden.read(name)
    for key, (images, _) in golden_inputs(name).items():
        top5 = expected.manifest["outputs"][key]["top5"]
        logits = pair.flax_forward(images)
        assert_close(logits, expected.outputs[key], name=f"{name} {key}: flax vs golden",
                     **tolerance)
        for candidate in (logits, outputs[key]):
            assert [row[0] for row in _top(candidate, 1)] == [row[0] for row in top5]
            assert [set(row) for row in _top(candidate, 5)] == [set(row) for row in top5]
