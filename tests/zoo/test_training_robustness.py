"""The zoo's gradient and step checks over many input batches (issue 30): a correct port
passes on any input and any CPU, whatever side of a kink rounding puts an element on.

Not in the default run (about 40 s a seed for the four checks): `pytest
tests/zoo/test_training_robustness.py --robustness-seeds=50`. Each seed draws a batch of 2
ImageNet-sized images; the records of the parity report (`--parity-report=FILE`) say, per
check, which elements rounding flipped and what the margin was before they were set apart.
"""

import numpy as np
import pytest

from tests.zoo.test_training_parity import GRADIENT_PAIRS, adamw

pytestmark = [pytest.mark.robustness, pytest.mark.zoo_all]


def _images(seed):
    return np.random.RandomState(1000 + seed).normal(0.0, 1.0, (2, 3, 224, 224)).astype(
        np.float32)


@pytest.mark.parity(dtypes=["float32"])
@pytest.mark.parametrize("name", GRADIENT_PAIRS)
def test_gradients_agree_on_every_seed(parity_pair, name, robustness_seed):
    parity_pair(name).assert_grads_close(_images(robustness_seed),
                                         name=f"{name} seed {robustness_seed}")


@pytest.mark.parity(dtypes=["float32"])
@pytest.mark.parametrize("name", GRADIENT_PAIRS)
def test_three_adamw_steps_agree_on_every_seed(parity_pair, name, robustness_seed):
    parity_pair(name).assert_steps_close(_images(robustness_seed), optimizer=adamw, steps=3,
                                         name=f"{name} seed {robustness_seed}")
