"""Training bugs of a port that only training shows (issue 18), each injected into the zoo's
ResNet-18 and checked to change the verdict: the correct port passes the same check
(tests/zoo/test_training_parity.py and the first test here), the injected one fails it,
naming what differs. The injected ports' failing comparisons are collected here, not
reported: the run's parity report lists what the suite holds to parity."""

import numpy as np
import pytest
import torch

from pytest_parity.compare import records

optax = pytest.importorskip("optax")
pytestmark = pytest.mark.zoo_all  # 28 s of training steps: the whole zoo's, not the main job's

LEARNING_RATE, WEIGHT_DECAY = 1e-3, 0.05
IMAGES = np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32)


def adamw(parameters):
    return torch.optim.AdamW(parameters, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)


@pytest.fixture
def resnet18(parity_pair):
    return parity_pair("resnet18")


@pytest.mark.parity(dtypes=["float32"])
def test_the_correct_port_passes_one_step(resnet18):
    resnet18.assert_steps_close(IMAGES, optimizer=adamw, steps=1)


@pytest.mark.parity(dtypes=["float32"])
def test_batch_norm_momentum_ported_as_0_1_fails_after_one_step(resnet18, monkeypatch):
    from models.resnet import flax_model

    port_batch_norm = flax_model.BatchNorm
    monkeypatch.setattr(flax_model, "BatchNorm", lambda **settings: port_batch_norm(
        **{**settings, "momentum": 0.1}))  # torch's number, in Flax's opposite convention
    with records.collecting() as found, pytest.raises(AssertionError) as failure:
        resnet18.assert_steps_close(IMAGES, optimizer=adamw, steps=1)
    assert found and not found[-1]["passed"]
    text = str(failure.value)
    assert "1 training step/buffers/bn1.running_mean: values are not sufficiently close" in text
    assert "buffers/layer4.1.bn2.running_var" in text
    assert "params/" not in text.split("loss per step")[0]  # the batch normalises: same step


def _adam_with_l2():
    """AdamW's decay ported as optax.add_decayed_weights *before* the Adam scaling: L2."""
    return optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optax.scale_by_adam(),
                       optax.scale(-LEARNING_RATE))


@pytest.mark.parity(dtypes=["float32"])
def test_adamw_decay_ported_as_l2_fails(resnet18):
    decoupled = optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(WEIGHT_DECAY),
                            optax.scale(-LEARNING_RATE))  # what optax.adamw chains
    resnet18.assert_steps_close(IMAGES, optimizer=(adamw, decoupled), steps=1)
    with records.collecting() as found, pytest.raises(AssertionError) as failure:
        resnet18.assert_steps_close(IMAGES, optimizer=(adamw, _adam_with_l2()), steps=1)
    assert found and not found[-1]["passed"]
    text = str(failure.value)
    assert "1 training step/params/conv1.weight: values are not sufficiently close" in text
    assert "optimizer/exp_avg/" in text  # L2 enters the moments, decoupled decay does not
