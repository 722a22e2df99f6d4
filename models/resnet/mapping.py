"""torchvision ResNet <-> canonical tree, for every depth (basic and bottleneck blocks).

torchvision keys `layer{i}.{j}.conv1.weight`; the canonical tree, which the Flax ResNet's
variable tree follows, names blocks `layer{i}/block{j}/conv1/kernel`.
"""

from pytest_parity.mapping import Mapping, Rule, batch_norm_rules
from pytest_parity.transforms import OIHW_TO_HWIO, OUT_IN_TO_IN_OUT

BLOCK = "layer{i}.{j}"
CANONICAL_BLOCK = "layer{i}/block{j}"

RULES = (
    Rule("conv1/kernel", "conv1.weight", "HWIO", transform=OIHW_TO_HWIO),
    *batch_norm_rules("bn1", "bn1"),
    # conv1..conv3 and bn1..bn3: bottleneck blocks use all three, basic blocks two.
    Rule(f"{CANONICAL_BLOCK}/conv{{k}}/kernel", f"{BLOCK}.conv{{k}}.weight", "HWIO",
         transform=OIHW_TO_HWIO),
    *batch_norm_rules(f"{BLOCK}.bn{{k}}", f"{CANONICAL_BLOCK}/bn{{k}}"),
    Rule(f"{CANONICAL_BLOCK}/downsample/conv/kernel", f"{BLOCK}.downsample.0.weight", "HWIO",
         transform=OIHW_TO_HWIO),
    *batch_norm_rules(f"{BLOCK}.downsample.1", f"{CANONICAL_BLOCK}/downsample/bn"),
    Rule("fc/kernel", "fc.weight", "IO", transform=OUT_IN_TO_IN_OUT),
    Rule("fc/bias", "fc.bias", "O"),
)


def resnet_mapping(architecture: str) -> Mapping:
    """The mapping of any torchvision ResNet (resnet18 ... resnet152)."""
    return Mapping(architecture, RULES)
