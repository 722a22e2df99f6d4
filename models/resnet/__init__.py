"""The ResNet family: torchvision's ResNets and their canonical (Flax-shaped) checkpoint tree."""
