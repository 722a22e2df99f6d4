"""Every registered zoo pair has a pinned parameter count, met by its torch and Flax sides."""

import math

import pytest

from models.registry import PARAM_COUNTS, RESNETS, VITS
from pytest_parity import registry

torch = pytest.importorskip("torch")
pytest.importorskip("flax")


def test_every_registered_model_has_a_pinned_parameter_count():
    zoo = sorted([*RESNETS, *VITS])
    assert sorted(PARAM_COUNTS) == zoo
    assert set(zoo) <= set(registry.names())


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_both_sides_have_the_pinned_parameter_count(name):
    from pytest_parity.checkpoint.convert import flax_spec

    pair = registry.get(name)
    with torch.device("meta"):  # shapes only: no memory, no init
        torch_count = sum(p.numel() for p in pair.torch_model().parameters())
    flax_count = sum(math.prod(spec.shape)
                     for path, spec in flax_spec(pair).items()
                     if pair.mapping.rule_for(path).collection == "params")
    assert (torch_count, flax_count) == (PARAM_COUNTS[name], PARAM_COUNTS[name])
