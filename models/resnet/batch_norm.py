"""BatchNorm as torch's kernel computes it in low precision, for the Linen and NNX ports.

In inference torch folds the running statistics, scale and bias into one multiplier and one
offset in float32 (alpha = scale / sqrt(var + eps), beta = bias - mean * alpha) and rounds
x * alpha + beta to the tensor's dtype once. Flax's BatchNorm computes in the dtype of its
variables: in bfloat16 it rounds x - mean, rsqrt(var + eps) and its product with the scale,
each to bfloat16. Measured here on one layer (64 channels, bfloat16): torch's output is its
float32 output rounded once; Flax's drifts 1.6x as far (rms); over ResNet-18 and -50 Flax
drifted 2.2-2.4x as far as torch from its own float32 logits, and with this layer
0.98-1.19x. float32 results are unchanged (the same arithmetic, in the same precision).

Training mode is torch's too: the batch's mean and biased variance (two passes, float32)
normalise, and the running statistics take the *unbiased* variance (n / (n - 1), n = N*H*W),
as torch's do; Flax's own BatchNorm updates them with the biased one. Momentum is Flax's
convention (torch's 0.1 is 0.9 here). Measured on ResNet-18 (batch 2, 64x64, 3 AdamW steps
in training mode): with Flax's own BatchNorm the running variances end up to 51x the
float64 budget apart from torch's (layer4.0.downsample: 5.9e-2 where 2.6e-2 is allowed);
with this one they agree (pytest_parity's steps check, tests/zoo/test_training_parity.py).
After one training-mode forward (seeded torchvision ResNet-18, batch 4, 64x64,
tests/zoo/test_batch_norm_training.py): running variances up to 1.4e-2 (relative) from
torch's with Flax's own, 8.2e-7 with this one; the logits 6.6e-6 and 6.7e-6 apart (max abs,
the convolutions' rounding: both normalise by the biased variance).
Two passes, not Flax's default E[x^2] - E[x]^2 (`use_fast_variance`), which cancels where
the mean is large against the spread: on channels of mean 10 and standard deviation 0.1-2
(float32) it is 2.5e-4 from the float64 variance, the two passes 1.2e-7 and torch's kernel
(a float64 sum of float32 squared deviations) 8e-8.
Statistics and the folded product are in float32 or wider: a float64 model computes in
float64, as torch's does (a float32 floor made the zoo's float64 ResNet-18 2.4e-7 from
torch's in inference and 1.1e-6 in training; now 7e-15 and 2e-14). `mask` is not supported
in training (an error).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx


def _wide(dtype: Any) -> Any:
    """float32, or the dtype where it is wider (float64): torch's accumulation type."""
    return jnp.promote_types(dtype, jnp.float32)


def _no_mask(mask: jax.Array | None) -> None:
    if mask is not None:
        raise NotImplementedError("the zoo's BatchNorm computes the batch statistics over every "
                                  "element (as torch's does): `mask` is not supported")


def _batch_statistics(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The batch's mean, biased variance (normalising) and unbiased variance (the running
    statistics' update), in float32 or wider over every axis but the channels."""
    wide = x.astype(_wide(x.dtype))
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(wide, axes)
    biased = jnp.mean(jnp.square(wide - mean), axes)
    n = x.size // x.shape[-1]
    return mean, biased, biased * (n / max(n - 1, 1))


def _torch_inference(x: jax.Array, mean: jax.Array, var: jax.Array, scale: jax.Array,
                     bias: jax.Array, epsilon: float, dtype: Any) -> jax.Array:
    """x * alpha + beta in float32 (or wider), rounded to `dtype` once (torch's batch_norm
    kernel)."""
    wide = _wide(x.dtype)
    alpha = scale.astype(wide) * jax.lax.rsqrt(var.astype(wide) + epsilon)
    beta = bias.astype(wide) - mean.astype(wide) * alpha
    return (x.astype(wide) * alpha + beta).astype(dtype or x.dtype)


class BatchNorm(nn.BatchNorm):
    """Linen's BatchNorm (same variables and fields), computing as torch's kernel does in
    inference and in training (see the module doc). Channels last; scale and bias used;
    `mask` is not supported in training."""

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool | None = None, *,
                 mask: jax.Array | None = None) -> jax.Array:
        running = nn.merge_param("use_running_average", self.use_running_average,
                                 use_running_average)
        features = (x.shape[-1],)
        mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32),
                             features)
        var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), features)
        scale = self.param("scale", self.scale_init, features, self.param_dtype)
        bias = self.param("bias", self.bias_init, features, self.param_dtype)
        if running:
            return _torch_inference(x, mean.value, var.value, scale, bias, self.epsilon,
                                    self.dtype)
        _no_mask(mask)
        batch_mean, biased, unbiased = _batch_statistics(x)
        if not self.is_initializing():
            mean.value = self.momentum * mean.value + (1 - self.momentum) * batch_mean
            var.value = self.momentum * var.value + (1 - self.momentum) * unbiased
        return _torch_inference(x, batch_mean, biased, scale, bias, self.epsilon, self.dtype)


class NNXBatchNorm(nnx.BatchNorm):
    """nnx.BatchNorm (same state and fields), computing as torch's kernel does in inference
    and in training (see the module doc). Channels last; scale and bias used; `mask` is not
    supported in training."""

    def __call__(self, x: jax.Array, use_running_average: bool | None = None, *,
                 mask: jax.Array | None = None) -> jax.Array:
        running = self.use_running_average if use_running_average is None \
            else use_running_average
        if running:
            return _torch_inference(x, self.mean[...], self.var[...], self.scale[...],
                                    self.bias[...], self.epsilon, self.dtype)
        _no_mask(mask)
        batch_mean, biased, unbiased = _batch_statistics(x)
        self.mean[...] = self.momentum * self.mean[...] + (1 - self.momentum) * batch_mean
        self.var[...] = self.momentum * self.var[...] + (1 - self.momentum) * unbiased
        return _torch_inference(x, batch_mean, biased, self.scale[...], self.bias[...],
                                self.epsilon, self.dtype)
