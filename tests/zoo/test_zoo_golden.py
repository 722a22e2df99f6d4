"""torchvision (drift of the original) and the Flax port, each held to the golden logits."""

from pathlib import Path

import numpy as np
import pytest

from models.golden import golden_inputs
from models.registry import PARAM_COUNTS
from pytest_parity import assert_close, golden, registry

REFERENCE_OUTPUTS = Path(__file__).resolve().parents[2] / "reference_outputs"

pytestmark = pytest.mark.parity
pytest.importorskip("matplotlib")


def _top(logits, k):
    return np.argsort(-logits, axis=-1)[:, :k].tolist()


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))  # every zoo model
def test_torchvision_and_flax_match_the_golden_logits(zoo_pair, name, parity_device):
    if parity_device != "cpu":
        pytest.skip("the goldens are float32 CPU logits; devices are compared in test_zoo_parity")
    expected = golden.read(REFERENCE_OUTPUTS, name)
    pair = zoo_pair(name)
    inputs = golden_inputs(name)
    problems = golden.provenance_problems(
        expected, pair.checkpoint_digest,
        {key: golden.array_digest(images) for key, (images, _) in inputs.items()})
    if problems:
        pytest.fail(f"[parity] {name}: the goldens belong to another checkpoint or other "
                    f"inputs (not a parity failure): {'; '.join(problems)}", pytrace=False)
    for key, (images, _) in inputs.items():
        reference = expected.outputs[key]
        top5 = expected.manifest["outputs"][key]["top5"]
        for framework, logits in (("torchvision", pair.torch_logits(images)),
                                  ("flax", pair.flax_logits(images))):
            assert_close(logits, reference, name=f"{name} {key}: {framework} vs golden",
                         **registry.get(name).tolerance("float32"))
            assert [row[0] for row in _top(logits, 1)] == [row[0] for row in top5]
            assert [set(row) for row in _top(logits, 5)] == [set(row) for row in top5]
