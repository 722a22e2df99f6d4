"""Training parity: gradients of one loss, optimizer steps, and the loss going down.

    gradients.py   both sides' gradients of one scalar loss (by default a fixed random
                   projection of the outputs), the Flax side's carried through the mapping
    optimizers.py  torch.optim optimizers and their optax equivalents, as data
    steps.py       N optimizer steps on each side, what each ends with by torch key
    descent.py     assert_loss_decreases: a few steps of one side, and the loss must fall
"""

from pytest_parity.train.descent import assert_loss_decreases
from pytest_parity.train.gradients import (
    LOW_PRECISION,
    FlaxGradients,
    Gradients,
    flax_projection_loss,
    flax_projections,
    mapped_parameters,
    projections,
    torch_gradients,
    torch_projection_loss,
)
from pytest_parity.train.optimizers import (
    EQUIVALENCES,
    Equivalence,
    optax_equivalent,
    state_fields,
)
from pytest_parity.train.steps import Trained, flax_steps, torch_steps, training_mode

__all__ = [
    "EQUIVALENCES",
    "LOW_PRECISION",
    "Equivalence",
    "FlaxGradients",
    "Gradients",
    "Trained",
    "assert_loss_decreases",
    "flax_projection_loss",
    "flax_projections",
    "flax_steps",
    "mapped_parameters",
    "optax_equivalent",
    "projections",
    "state_fields",
    "torch_gradients",
    "torch_projection_loss",
    "torch_steps",
    "training_mode",
]
