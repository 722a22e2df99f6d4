"""flaxmodels' ResNet-50 (the Flax collection this project's design started from; its PyPI
package, randomly initialised) against torchvision's ResNet-50 on the zoo's seeded weights:
the Flax side's variables are carried from torch by the automatic mapping."""

import pytest

from pytest_parity import pair_of
from tests.support.requirements import require

require("flaxmodels", "flaxmodels is not installed: pip install -e '.[ports]'")


def _seeded_torchvision_resnet50():
    """torchvision's ResNet-50 holding the zoo's seeded weights (trained-looking statistics)."""
    import torch

    from models.seeded import seeded_state_dict
    from pytest_parity import registry

    zoo = registry.get("resnet50")
    model = zoo.torch_model()
    model.load_state_dict({key: torch.from_numpy(value)
                           for key, value in seeded_state_dict(zoo, 0).items()})
    return model


@pytest.mark.parity(devices=["cpu"], dtypes=["float32", "bfloat16"])
def test_flaxmodels_resnet50(parity_dtype):
    """flaxmodels' ResNet50 (its `train` flag at the call, no input normalization) against
    torchvision's: 2 lines."""
    import flaxmodels

    torch_model = _seeded_torchvision_resnet50()
    flax_model = flaxmodels.ResNet50(output="logits", pretrained=None, normalize=False)

    pair = pair_of(torch_model, flax_model, input_shape=(2, 3, 64, 64),
                   flax_call={"train": False}, dtype=parity_dtype)
    pair.assert_close(pair.example_inputs())
