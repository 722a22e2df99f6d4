"""Deliberate mistakes in the Flax port fail the zoo's float32 tolerance (the defaults).

These comparisons are meant to fail, so they use `compare` (which reports to nobody) rather
than `assert_close`, and stay out of the parity report.
Measured excess over the tolerance: 80x (tanh GELU), 1600x (LayerNorm epsilon 1e-5) and
2e5x (first BatchNorm's scale and variance swapped).
"""

import copy

import numpy as np
import pytest

from pytest_parity import registry
from pytest_parity.compare import compare


def _tanh_gelu(monkeypatch):
    import flax.linen as nn

    from models.vit import flax_model

    exact = nn.gelu
    monkeypatch.setattr(flax_model.nn, "gelu", lambda x, approximate=False: exact(x, True))


def _layer_norm_epsilon_1e5(monkeypatch):
    from models.vit import flax_model

    monkeypatch.setattr(flax_model, "LAYER_NORM_EPSILON", 1e-5)


def _swap_first_batch_norm_scale_and_var(variables):
    params, stats = variables["params"]["bn1"], variables["batch_stats"]["bn1"]
    params["scale"], stats["var"] = stats["var"], params["scale"]


MUTATIONS = {
    "vit-tanh-gelu": ("vit_b_16", _tanh_gelu, None),
    "vit-layer-norm-epsilon-1e-5": ("vit_b_16", _layer_norm_epsilon_1e5, None),
    "resnet-batch-norm-scale-var-swapped": ("resnet50", None, _swap_first_batch_norm_scale_and_var),
}


@pytest.mark.parity(devices=["cpu"], dtypes=["float32"])
@pytest.mark.parametrize(("name", "mutation"),  # by model, so that the zoo runs it among its own
                         [(name, mutation) for mutation, (name, *_) in MUTATIONS.items()])
def test_mutations_of_the_flax_port_are_detected(parity_pair, random_images, monkeypatch,
                                                 name, mutation):
    import jax

    _, patch_code, edit_variables = MUTATIONS[mutation]
    pair = parity_pair(name)
    variables = copy.deepcopy(pair.flax_variables)
    if patch_code:
        patch_code(monkeypatch)
    if edit_variables:
        edit_variables(variables)
    mutated_apply = jax.jit(registry.get(name).flax_model().apply)  # compiled with the patch
    logits = np.asarray(mutated_apply(variables, pair.pair.input_layout.to_flax(random_images)))
    result = compare(logits, pair.torch_forward(random_images), name=f"{name} ({mutation})")
    assert not result.passed and result.margin > 50, result
