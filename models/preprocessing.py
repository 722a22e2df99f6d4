"""ImageNet preprocessing: torchvision's own transforms, and a numpy/JAX port of them.

The torch side uses each model's weights transforms (`ResNet50_Weights.IMAGENET1K_V1
.transforms()`: resize the shorter side to 256 with antialiased bilinear, center-crop 224,
scale to [0, 1], normalise). The port does the same with `jax.image.resize`; the two are
compared in tests/zoo/test_preprocessing.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# Each model's torchvision weights whose transforms preprocess its inputs; torchvision has no
# ViT-Ti/16 weights, so it takes ViT-B/16's transforms.
WEIGHTS = {
    "resnet18": ("ResNet18_Weights", "IMAGENET1K_V1"),
    "resnet34": ("ResNet34_Weights", "IMAGENET1K_V1"),
    "resnet50": ("ResNet50_Weights", "IMAGENET1K_V1"),
    "resnet101": ("ResNet101_Weights", "IMAGENET1K_V1"),
    "resnet152": ("ResNet152_Weights", "IMAGENET1K_V1"),
    "vit_ti_16": ("ViT_B_16_Weights", "IMAGENET1K_V1"),
    "vit_b_16": ("ViT_B_16_Weights", "IMAGENET1K_V1"),
    "vit_b_32": ("ViT_B_32_Weights", "IMAGENET1K_V1"),
    "vit_l_16": ("ViT_L_16_Weights", "IMAGENET1K_V1"),
}


def photo() -> Any:
    """The real photo that ships with matplotlib (Grace Hopper, 512x600 RGB), as a PIL image."""
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        return image.convert("RGB")


def torchvision_transform(name: str) -> Any:
    from models.registry import torchvision_models

    weights, member = WEIGHTS[name]
    return getattr(getattr(torchvision_models(), weights), member).transforms()


def describe(name: str) -> str:
    """One line naming the transform and its settings, for provenance manifests."""
    weights, member = WEIGHTS[name]
    settings = " ".join(str(torchvision_transform(name)).split())
    return f"torchvision {weights}.{member}.transforms(): {settings}"


def torchvision_preprocess(name: str, image: Any) -> np.ndarray:
    """A PIL image preprocessed by torchvision's own transforms, as a (1, 3, H, W) batch."""
    return torchvision_transform(name)(image).unsqueeze(0).numpy()


def jax_preprocess(image: np.ndarray, *, resize: int = 256, crop: int = 224) -> np.ndarray:
    """The same steps in JAX on an (H, W, 3) uint8 array; returns a (1, 3, crop, crop) batch."""
    import jax

    height, width, _ = image.shape
    # torchvision: the shorter side becomes `resize`, the longer int(resize * long / short).
    size = (resize, int(resize * width / height)) if height <= width else \
        (int(resize * height / width), resize)
    resized = np.asarray(jax.image.resize(image.astype(np.float32), (*size, 3), "linear",
                                          antialias=True))
    top, left = round((size[0] - crop) / 2.0), round((size[1] - crop) / 2.0)
    cropped = resized[top:top + crop, left:left + crop] / 255.0
    return ((cropped - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None].astype(np.float32)
