"""The zoo's pairs: torchvision (the original implementation) and the native Flax models.

Importing this module registers every pair; nothing here imports torch or jax until a
factory is called.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from models.resnet.mapping import resnet_mapping
from models.vit.mapping import vit_mapping
from pytest_parity.registry import Pair, register

IMAGENET_INPUT = (1, 3, 224, 224)
# The zoo models held to golden outputs in reference_outputs/: the full-size ResNet-50 and
# ViT-B/16, and the small configurations that make the same checks fast.
GOLDEN_MODELS = ("resnet18", "resnet50", "vit_ti_16", "vit_b_16")
# Trainable parameters (BatchNorm running statistics excluded), torchvision's own figures;
# tests hold both the torch and the Flax side of every registered pair to them.
PARAM_COUNTS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "vit_ti_16": 5_717_416, "vit_b_16": 86_567_656, "vit_b_32": 88_224_232,
    "vit_l_16": 304_326_632,
}
RESNETS = {"resnet18": "ResNet18", "resnet34": "ResNet34", "resnet50": "ResNet50",
           "resnet101": "ResNet101", "resnet152": "ResNet152"}
# name: (torchvision builder, Flax partial, patch size, layers, heads, hidden, mlp)
VITS = {
    "vit_ti_16": (None, "ViT_Ti_16", 16, 12, 3, 192, 768),
    "vit_b_16": ("vit_b_16", "ViT_B_16", 16, 12, 12, 768, 3072),
    "vit_b_32": ("vit_b_32", "ViT_B_32", 32, 12, 12, 768, 3072),
    "vit_l_16": ("vit_l_16", "ViT_L_16", 16, 24, 16, 1024, 4096),
}


def _torchvision_models() -> Any:
    from pytest_parity.torchvision_compat import import_torchvision

    return import_torchvision().models


def _torch_resnet(name: str) -> Any:
    return getattr(_torchvision_models(), name)()


def _flax_resnet(flax_name: str) -> Any:
    from models.resnet import flax_model

    return getattr(flax_model, flax_name)()


def _torch_vit(builder: str | None, patch: int, layers: int, heads: int, hidden: int,
               mlp: int) -> Any:
    models = _torchvision_models()
    if builder is not None:
        return getattr(models, builder)()
    # torchvision ships no Ti/16 builder; its class with DeiT-Ti's configuration.
    return models.vision_transformer.VisionTransformer(
        image_size=224, patch_size=patch, num_layers=layers, num_heads=heads,
        hidden_dim=hidden, mlp_dim=mlp)


def _flax_vit(flax_name: str) -> Any:
    from models.vit import flax_model

    return getattr(flax_model, flax_name)()


def _golden(name: str) -> Any:
    from models.golden import compute

    return compute(name)


for _name, _flax_name in RESNETS.items():
    register(Pair(_name, partial(_torch_resnet, _name), partial(_flax_resnet, _flax_name),
                  resnet_mapping(_name), IMAGENET_INPUT, golden=partial(_golden, _name)))

for _name, (_builder, _flax_name, *_config) in VITS.items():
    register(Pair(_name, partial(_torch_vit, _builder, *_config), partial(_flax_vit, _flax_name),
                  vit_mapping(_name, num_heads=_config[2], hidden_dim=_config[3]),
                  IMAGENET_INPUT, golden=partial(_golden, _name)))
