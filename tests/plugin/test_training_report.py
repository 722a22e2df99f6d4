"""Gradient, training-step and loss-goes-down checks reach the report like forward
comparisons (issue 18): a row of the table each, a record in the JSON with its kind, a
failing one a FAIL row."""

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("flax")

REPO = Path(__file__).resolve().parents[2]

CASES = f"""
import sys
sys.path.insert(0, {str(REPO)!r})

import jax
import numpy as np
import pytest
import torch
import flax.linen as nn

import tests.support.tinynet  # registers the pair "tinynet"
from pytest_parity import parity_test
from pytest_parity.strategies import sequence_batches
from pytest_parity.train import assert_loss_decreases

IMAGES = np.random.RandomState(0).normal(0, 1, (2, 3, 8, 8)).astype(np.float32)


@parity_test(torch=lambda: torch.nn.Linear(8, 4), flax=lambda: nn.Dense(4),
             inputs=sequence_batches(features=8), grads=True, max_examples=3)
def test_dense_gradients(result):
    pass


class Stopped(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(4)(jax.lax.stop_gradient(x))


@parity_test(torch=lambda: torch.nn.Linear(8, 4), flax=Stopped,
             inputs=sequence_batches(features=8), grads=True, max_examples=3)
def test_stopped_gradients(result):
    pass


@pytest.mark.parity(dtypes=["float32"])
def test_tinynet_steps(parity_pair):
    parity_pair("tinynet").assert_steps_close(
        IMAGES, steps=2, training=False,
        optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9))


@pytest.mark.parity(dtypes=["float32"])
def test_linear_learns():
    torch.manual_seed(0)
    assert_loss_decreases(torch.nn.Linear(3, 2), IMAGES[:, :, 0, 0])
"""


def test_training_checks_are_rows_and_records_with_their_kind(pytester):
    pytester.makepyfile(test_training_cases=CASES)
    result = pytester.runpytest("-p", "no:randomly", "--parity-report=report.json")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines_random([
        "*budget*test_dense_gradients*gradients, worst of 3 examples*PASS*",
        "*test_stopped_gradients*failing example of *FAIL*",
        "*budget*test_tinynet_steps*tinynet: 2 training steps*PASS*",
        "*test_linear_learns*loss goes down*PASS*",
    ])
    records = json.loads((pytester.path / "report.json").read_text())["records"]
    kinds = {record["test"].split("::")[1].split("[")[0]: record.get("kind")
             for record in records if record.get("kind")}
    assert kinds == {"test_dense_gradients": "gradients", "test_stopped_gradients": "gradients",
                     "test_tinynet_steps": "steps", "test_linear_learns": "loss_down"}
    steps = next(record for record in records if record.get("kind") == "steps")
    assert len(steps["losses"]["torch"]) == len(steps["losses"]["flax"]) == 2
    assert steps["budget"]["drift_of"] == "both sides"
    stopped = next(record for record in records
                   if record.get("kind") == "gradients" and not record["passed"])
    assert stopped["failing_leaves"] == ["inputs"]
