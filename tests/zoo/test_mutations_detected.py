"""Deliberate mistakes in the Flax port fail the zoo's float32 tolerance (the defaults).

Not marked `parity`: these comparisons are meant to fail, so they stay out of the report.
Measured excess over the tolerance: 80x (tanh GELU), 1600x (LayerNorm epsilon 1e-5) and
2e5x (first BatchNorm's scale and variance swapped).
"""

import copy

import pytest

from pytest_parity import assert_close, registry


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


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_mutations_of_the_flax_port_are_detected(zoo_pair, random_images, monkeypatch,
                                                 mutation):
    name, patch_code, edit_variables = MUTATIONS[mutation]
    pair = zoo_pair(name)
    variables = copy.deepcopy(pair.flax_variables)
    if patch_code:
        patch_code(monkeypatch)
    if edit_variables:
        edit_variables(variables)
    mutated = type(pair)(name, pair.torch_model, registry.get(name).flax_model(), variables,
                         pair.checkpoint_digest)
    with pytest.raises(AssertionError, match=r"^\[parity\]"):
        assert_close(mutated.flax_logits(random_images), pair.torch_logits(random_images),
                     name=f"{name} logits ({mutation})")
