"""Realistic porting bugs, injected into the zoo's Flax side: into its code (a module variant,
patched in for one test) or into its converted variables. The diagnosis tests hold the trace
and the audits to finding each where it is."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

Patch = Callable[[Any, Any], Any]  # (monkeypatch, the loaded Flax module) -> the module to run


@dataclass(frozen=True)
class PortBug:
    """A bug, the module the trace must blame (torch name, '' the model itself), the audit
    finding that must name it (audit, a text its line holds) where an audit can see it, and a
    weightless torch module (the start of its description) the trace must name where the bug
    is in a module's own code."""

    model: str
    culprit: str
    finding: tuple[str, str] | None = None
    own_code: str = ""
    code: Patch | None = None
    variables: Callable[[dict[str, Any]], None] | None = None
    flax_inputs: Callable[[np.ndarray], np.ndarray] | None = None
    between: tuple[str, str] | None = None  # the children the trace must say it arises between


class _Namespace:
    """flax.linen with some names replaced, for one model file's `nn`."""

    def __init__(self, real: Any, **replaced: Any) -> None:
        self._real, self._replaced = real, replaced

    def __getattr__(self, name: str) -> Any:
        return self._replaced[name] if name in self._replaced else getattr(self._real, name)


def _as(cls: type, module: Any) -> Any:
    """The module's configuration in another (variant) class."""
    fields = {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
              if f.init and f.name not in ("parent", "name")}
    return cls(**fields)


# ---- ViT -----------------------------------------------------------------------------------

def _vit_block(monkeypatch: Any, which: str, block: Callable[[Any], type]) -> None:
    from models.vit import flax_model

    original = flax_model.EncoderBlock
    variant = block(original)
    monkeypatch.setattr(flax_model, "EncoderBlock", lambda *args, name, **kwargs: (
        variant if name == which else original)(*args, name=name, **kwargs))


def _tanh_gelu_block(original: type) -> type:
    import flax.linen as nn

    from models.vit import flax_model

    class TanhMlp(flax_model.MlpBlock):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            y = nn.gelu(nn.Dense(self.mlp_dim, dtype=self.dtype, name="fc1")(x),
                        approximate=True)
            return nn.Dense(x.shape[-1], dtype=self.dtype, name="fc2")(y)

    return _block_with(original, mlp=TanhMlp)


def _block_with(original: type, *, mlp: Any = None, epsilon: float | None = None) -> type:
    import flax.linen as nn

    from models.vit import flax_model
    from models.vit.attention import attention_in_float32

    class Variant(original):  # type: ignore[misc, valid-type]
        @nn.compact
        def __call__(self, x: Any) -> Any:
            norm = partial(nn.LayerNorm, epsilon=epsilon or flax_model.LAYER_NORM_EPSILON,
                           dtype=self.dtype)
            y = norm(name="ln_1")(x)
            y = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dtype=self.dtype,
                                                deterministic=True,
                                                attention_fn=attention_in_float32,
                                                name="attention")(y, y)
            x = x + y
            return x + (mlp or flax_model.MlpBlock)(self.mlp_dim, self.dtype, name="mlp")(
                norm(name="ln_2")(x))

    return Variant


def _vit_class_token_last(monkeypatch: Any, module: Any) -> Any:
    import flax.linen as nn
    import jax.numpy as jnp

    from models.vit import flax_model

    class ClassTokenLast(flax_model.VisionTransformer):
        @nn.compact
        def __call__(self, x: Any, train: bool = False) -> Any:
            patch = (self.patch_size, self.patch_size)
            x = nn.Conv(self.hidden_dim, patch, patch, padding="VALID", dtype=self.dtype,
                        name="conv_proj")(x)
            batch, height, width, channels = x.shape
            x = x.reshape(batch, height * width, channels)
            token = self.param("class_token", nn.initializers.zeros, (1, 1, channels))
            x = jnp.concatenate([x, jnp.broadcast_to(token.astype(x.dtype),
                                                     (batch, 1, channels))], axis=1)
            x = flax_model.Encoder(self.num_layers, self.num_heads, self.mlp_dim, self.dtype,
                                   name="encoder")(x)
            return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x[:, 0])

    return _as(ClassTokenLast, module)


def _vit_no_position_embedding(monkeypatch: Any, module: Any) -> Any:
    import flax.linen as nn

    from models.vit import flax_model

    class NoPosition(flax_model.Encoder):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            self.param("pos_embedding", nn.initializers.normal(stddev=0.02),
                       (1, x.shape[1], x.shape[2]))  # declared, never added
            for index in range(self.num_layers):
                x = flax_model.EncoderBlock(self.num_heads, self.mlp_dim, self.dtype,
                                            name=f"layer{index}")(x)
            return nn.LayerNorm(epsilon=flax_model.LAYER_NORM_EPSILON, dtype=self.dtype,
                                name="ln")(x)

    monkeypatch.setattr(flax_model, "Encoder", NoPosition)
    return module


def _vit_final_layer_norm_skipped(monkeypatch: Any, module: Any) -> Any:
    import flax.linen as nn

    from models.vit import flax_model

    class NoFinalNorm(flax_model.Encoder):
        @nn.compact
        def __call__(self, x: Any) -> Any:
            position = self.param("pos_embedding", nn.initializers.normal(stddev=0.02),
                                  (1, x.shape[1], x.shape[2]))
            x = x + position.astype(self.dtype)
            for index in range(self.num_layers):
                x = flax_model.EncoderBlock(self.num_heads, self.mlp_dim, self.dtype,
                                            name=f"layer{index}")(x)
            return x  # its LayerNorm's weights converted, the LayerNorm never applied

    monkeypatch.setattr(flax_model, "Encoder", NoFinalNorm)
    return module


def _out_projection_not_transposed(variables: dict[str, Any]) -> None:
    out = variables["params"]["encoder"]["layer2"]["attention"]["out"]
    heads, head_dim, width = out["kernel"].shape
    torch_weight = out["kernel"].reshape(heads * head_dim, width).T  # [out, in], as torch keeps
    out["kernel"] = np.ascontiguousarray(torch_weight.reshape(heads, head_dim, width))


def _query_key_swapped(variables: dict[str, Any]) -> None:
    attention = variables["params"]["encoder"]["layer7"]["attention"]
    attention["query"], attention["key"] = attention["key"], attention["query"]


# ---- ResNet --------------------------------------------------------------------------------

def _resnet_nn(monkeypatch: Any, **replaced: Any) -> None:
    import flax.linen as nn

    from models.resnet import flax_model

    monkeypatch.setattr(flax_model, "nn", _Namespace(nn, **replaced))


def _max_pool_unpadded(monkeypatch: Any, module: Any) -> Any:
    import flax.linen as nn

    _resnet_nn(monkeypatch, max_pool=lambda x, window, strides, padding: nn.max_pool(
        x, window, strides, padding="VALID"))
    return module


def _batch_norm_epsilon_1e3(monkeypatch: Any, module: Any) -> Any:
    from models.resnet import flax_model

    port_batch_norm = flax_model.BatchNorm
    monkeypatch.setattr(flax_model, "BatchNorm", lambda **settings: port_batch_norm(
        **{**settings, "epsilon": 1e-3}))  # Keras' default
    return module


def _same_padding_on_strided_3x3(monkeypatch: Any, module: Any) -> Any:
    import flax.linen as nn

    from models.resnet import flax_model

    original = flax_model._conv

    def conv(features: int, kernel: int, stride: int, name: str, dtype: Any) -> Any:
        if kernel == 3 and stride == 2:
            return nn.Conv(features, (3, 3), (2, 2), padding="SAME", use_bias=False,
                           dtype=dtype, name=name)
        return original(features, kernel, stride, name, dtype)

    monkeypatch.setattr(flax_model, "_conv", conv)
    return module


def _stride_on_the_1x1(monkeypatch: Any, module: Any) -> Any:
    import flax.linen as nn

    from models.resnet import flax_model

    class V1Bottleneck(flax_model.Bottleneck):  # ResNet v1: the stride on the first 1x1
        @nn.compact
        def __call__(self, x: Any) -> Any:
            conv, norm = flax_model._conv, self.norm
            y = nn.relu(norm(name="bn1")(conv(self.planes, 1, self.stride, "conv1",
                                               self.dtype)(x)))
            y = nn.relu(norm(name="bn2")(conv(self.planes, 3, 1, "conv2", self.dtype)(y)))
            y = norm(name="bn3")(conv(self.planes * 4, 1, 1, "conv3", self.dtype)(y))
            return flax_model._add_shortcut(self, x, y)

    return module.clone(block_cls=V1Bottleneck)


def _scale_and_variance_swapped(variables: dict[str, Any]) -> None:
    params = variables["params"]["layer2"]["block1"]["bn2"]
    stats = variables["batch_stats"]["layer2"]["block1"]["bn2"]
    params["scale"], stats["var"] = stats["var"], params["scale"]


def _classifier_through_bfloat16(variables: dict[str, Any]) -> None:
    import ml_dtypes

    fc = variables["params"]["fc"]
    fc["kernel"] = fc["kernel"].astype(ml_dtypes.bfloat16).astype(np.float32)


def _channels_reversed(images: np.ndarray) -> np.ndarray:
    """The Flax side's own pipeline reads the image as BGR."""
    return np.ascontiguousarray(images[:, ::-1].transpose(0, 2, 3, 1))


BLOCK = "encoder.layers.encoder_layer_{}"
BUGS = {
    "vit-tanh-gelu-in-one-mlp": PortBug(
        "vit_ti_16", f"{BLOCK.format(3)}.mlp", ("settings", "GELU approximate"),
        own_code="mlp.1 (GELU(approximate='none'))",
        code=lambda mp, module: (_vit_block(mp, "layer3", _tanh_gelu_block), module)[1]),
    "vit-layer-norm-epsilon-1e-5-in-one-block": PortBug(
        "vit_ti_16", f"{BLOCK.format(0)}.ln_1", ("settings", "epsilon"),
        code=lambda mp, module: (_vit_block(
            mp, "layer0", partial(_block_with, epsilon=1e-5)), module)[1]),
    "vit-square-linear-not-transposed": PortBug(
        "vit_ti_16", f"{BLOCK.format(2)}.self_attention",
        ("weights", "encoder/layer2/attention/out/kernel"),
        variables=_out_projection_not_transposed),
    "vit-query-and-key-swapped": PortBug(
        "vit_ti_16", f"{BLOCK.format(7)}.self_attention",
        ("weights", "encoder/layer7/attention/query/kernel"), variables=_query_key_swapped),
    "vit-class-token-appended-last": PortBug(
        "vit_ti_16", "", code=_vit_class_token_last),
    "vit-position-embedding-not-added": PortBug(
        "vit_ti_16", "encoder", code=_vit_no_position_embedding),
    # Rounding takes a late layer's input over its margin of 1 long before the missing norm
    # makes the jump: the trace said "between encoder_layer_3 and encoder_layer_4".
    "vit-final-layer-norm-skipped": PortBug(
        "vit_ti_16", "encoder", code=_vit_final_layer_norm_skipped,
        between=("encoder.layers.encoder_layer_11", "")),
    "resnet-batch-norm-scale-and-variance-swapped": PortBug(
        "resnet18", "layer2.1.bn2", ("weights", "layer2/block1/bn2/scale"),
        variables=_scale_and_variance_swapped),
    "resnet-max-pool-without-padding": PortBug(
        "resnet18", "", ("settings", "max pooling"),
        own_code="maxpool (MaxPool2d(kernel_size=3, stride=2, padding=1",
        code=_max_pool_unpadded),
    "resnet-batch-norm-epsilon-1e-3": PortBug(
        "resnet18", "bn1", ("settings", "epsilon"), code=_batch_norm_epsilon_1e3),
    "resnet-same-padding-on-strided-conv": PortBug(
        "resnet18", "layer2.0.conv1", ("settings", "padding"),
        code=_same_padding_on_strided_3x3),
    "resnet-stride-on-the-1x1-conv": PortBug(
        "resnet50", "layer2.0.conv1", ("settings", "stride"), code=_stride_on_the_1x1),
    "resnet-classifier-weights-through-bfloat16": PortBug(
        "resnet18", "fc", ("weights", "fc/kernel"), variables=_classifier_through_bfloat16),
    "resnet-input-pipeline-reads-bgr": PortBug(
        "resnet18", "(inputs)", flax_inputs=_channels_reversed),
}
