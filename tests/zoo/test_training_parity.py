"""The zoo in training (issue 18): gradient parity of ResNet-18 and ViT-Ti/16 on seeded
checkpoints, judged by the gradients' float64 budget (pytest_parity.run.gradients).

Measured (this CPU, the seeded batch of 2 ImageNet-sized images, the default projection
loss): every parameter's and the input's gradient within the budget, worst margins 0.5
(ResNet-18) and 0.42 (ViT-Ti/16); torch's own float32 gradients are 1e-7 (ResNet-18) to
1.3e-5 (ViT-Ti/16's class token) from its float64 ones.
"""

import pytest

GRADIENT_PAIRS = ["resnet18", "vit_ti_16"]


@pytest.mark.parity(dtypes=["float32"])
@pytest.mark.parametrize("name", GRADIENT_PAIRS)
def test_gradients_agree(parity_pair, random_images, name):
    pair = parity_pair(name)
    result = pair.assert_grads_close(random_images, name=name)
    parameters = dict(pair.torch_model.named_parameters())
    assert set(result.torch.params) == set(parameters)  # every parameter, by its torch key
    assert result.torch.inputs.shape == random_images.shape  # and the input, in torch's layout
    assert all(leaf.tolerance_from == "budget" for leaf in result.comparison.leaves
               if leaf.path != "loss")
