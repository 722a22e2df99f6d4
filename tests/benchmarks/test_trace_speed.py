"""What tracing costs: a ResNet-50 float32 parity case as a user's test runs it (checkpoint
read, both models loaded, the Flax apply compiled, one comparison) passing, against the same
case failing with one BatchNorm's scale and variance swapped and diagnosed (`on-failure`).
The gate ([tool.parity] gates) holds the traced case to 3x the plain one; tracing is off the
passing path, so the plain case is what every passing case costs. The two alternate, round by
round, so that a slower spell of a shared machine weighs on both: timed one after the other,
a spell during the traced rounds took the ratio from 2.29 to 2.95 in one CI run."""

import numpy as np
import pytest

from pytest_parity import registry
from pytest_parity.compare import records
from pytest_parity.diagnose import mode
from tests.support.alternating import seconds_alternately

ROUNDS = 5
IMAGES = np.random.RandomState(1).normal(0.0, 1.0, (2, 3, 224, 224)).astype(np.float32)


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory):
    from pytest_parity.checkpoint import save
    from pytest_parity.run import checkpoint_for

    pair = registry.get("resnet50")
    checkpoint = checkpoint_for(pair, 0, tmp_path_factory.mktemp("seeded"))
    return save(tmp_path_factory.mktemp("resnet50") / "resnet50.h5", checkpoint)


def _case(checkpoint_file, swapped: bool):
    """One parity case from the file on: a fresh module, so its apply compiles each round."""
    import jax

    from pytest_parity.checkpoint import load
    from pytest_parity.run import load_pair
    from pytest_parity.run.sides import placed_variables

    pair = registry.get("resnet50")
    loaded = load_pair(pair, load(checkpoint_file), "cpu", "float32")
    if swapped:
        variables = jax.tree_util.tree_map(np.array, loaded.flax_variables)
        params = variables["params"]["layer2"]["block1"]["bn2"]
        stats = variables["batch_stats"]["layer2"]["block1"]["bn2"]
        params["scale"], stats["var"] = stats["var"], params["scale"]
        loaded.flax_variables = placed_variables(variables, "cpu", "float32")
    with mode.applied("on-failure"), records.collecting() as found:
        try:
            loaded.assert_close(IMAGES)
        except AssertionError:
            assert swapped
    return found[-1]


def test_resnet50_case_traced_and_plain(benchmark, checkpoint_file):
    """One warm-up pair, then ROUNDS pairs of (plain, traced); the median of each kept.
    Untimed (--benchmark-disable, as in the test suite) one pair: both verdicts checked."""
    def plain():
        record = _case(checkpoint_file, False)
        assert record["passed"] and "diagnosis" not in record

    def traced():
        record = _case(checkpoint_file, True)
        assert record["diagnosis"]["culprit"]["torch"] == "layer2.1.bn2"

    seconds = seconds_alternately(benchmark, {"plain": plain, "traced": traced}, ROUNDS)
    plain_s, traced_s = (float(np.median(seconds[side])) for side in ("plain", "traced"))
    benchmark.extra_info.update(plain_case_s=plain_s, traced_case_s=traced_s,
                                traced_over_plain=traced_s / plain_s)
