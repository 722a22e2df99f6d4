"""torchvision ResNet <-> canonical tree, for every depth (basic and bottleneck blocks).

torchvision keys `layer{i}.{j}.conv1.weight`; the canonical tree, which the Flax ResNet's
variable tree follows, names blocks `layer{i}/block{j}/conv1/kernel`.
"""

from pytest_parity.mapping import Mapping
from pytest_parity.mapping.layer_rules import batch_norm_rules, conv_rules, linear_rules

BLOCK = "layer{i}.{j}"
CANONICAL_BLOCK = "layer{i}/block{j}"

RULES = (
    *conv_rules("conv1", "conv1", bias=False),
    *batch_norm_rules("bn1", "bn1"),
    # conv1..conv3 and bn1..bn3: bottleneck blocks use all three, basic blocks two.
    *conv_rules(f"{BLOCK}.conv{{k}}", f"{CANONICAL_BLOCK}/conv{{k}}", bias=False),
    *batch_norm_rules(f"{BLOCK}.bn{{k}}", f"{CANONICAL_BLOCK}/bn{{k}}"),
    *conv_rules(f"{BLOCK}.downsample.0", f"{CANONICAL_BLOCK}/downsample/conv", bias=False),
    *batch_norm_rules(f"{BLOCK}.downsample.1", f"{CANONICAL_BLOCK}/downsample/bn"),
    *linear_rules("fc", "fc"),
)


def resnet_mapping(architecture: str) -> Mapping:
    """The mapping of any torchvision ResNet (resnet18 ... resnet152)."""
    return Mapping(architecture, RULES)
