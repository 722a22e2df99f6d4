"""Low-precision bugs the budget verdict catches (pytest_parity.compare.budget).

Each port below rounds where torch's computes in float32, or rounds through a narrower dtype
than the case asks for. Each test runs the correct port and the buggy one on the same torch
layer and the same hypothesis inputs: the correct one passes its budget, the buggy one fails
it, and the injection is checked to change the Flax output. Measured cross error / torch's
own drift (rms) for each bug is in the comment above its test; the budget allows 3.

Where the rounding is written with `lax.reduce_precision`: XLA's CPU backend computes
bfloat16 arithmetic in float32 and may keep the excess precision inside a fused kernel, so a
bfloat16 accumulation is written out as the hardware that has one would do it. The rounding
applies only where the computation dtype is bfloat16: the port computes in float32 correctly
(its reference run, and a float32 case).
"""

from typing import Any

import numpy as np
import pytest

from pytest_parity.run.decorator import check_parity
from pytest_parity.strategies import feature_batches, sequence_batches

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
nn = pytest.importorskip("flax.linen")

from models.vit.attention import attention_in_float32  # noqa: E402


def _bfloat16_rounded(x: Any) -> Any:
    return jax.lax.reduce_precision(x, exponent_bits=8, mantissa_bits=7)


def _flax_outputs_differ(correct: Any, buggy: Any, dtype: str, batch: np.ndarray) -> bool:
    """Whether the buggy port's output differs from the correct one's on the same variables
    (the correct run's) and input, in the case's dtype."""
    variables = correct.flax_variables
    x = jnp.asarray(batch, dtype)
    ours = np.asarray(correct.flax_module.apply(variables, x), np.float32)
    theirs = np.asarray(buggy.clone(dtype=jnp.dtype(dtype)).apply(variables, x), np.float32)
    return bool(np.any(ours != theirs))


def _budget_failure(**case: Any) -> str:
    with pytest.raises(AssertionError) as failure:
        check_parity(**case)
    return str(failure.value)


# Attention over 197 keys (ViT-B/16's sequence) ---------------------------------------------

def _softmax_summed_in_bfloat16(logits: Any, dtype: Any) -> Any:
    """softmax in the computation dtype: in bfloat16 the exponentials and each partial sum,
    accumulated key by key, rounded to bfloat16 (a kernel without a float32 accumulator)."""
    if jnp.dtype(dtype) != jnp.bfloat16:
        return jax.nn.softmax(logits, axis=-1)
    logits = logits.astype(jnp.float32)
    exponentials = _bfloat16_rounded(jnp.exp(logits - logits.max(-1, keepdims=True)))

    def add(total: Any, term: Any) -> tuple[Any, None]:
        return _bfloat16_rounded(total + term), None

    total, _ = jax.lax.scan(add, jnp.zeros(exponentials.shape[:-1], jnp.float32),
                            jnp.moveaxis(exponentials, -1, 0))
    return _bfloat16_rounded(exponentials / total[..., None])


def attention_softmax_in_bfloat16(query: Any, key: Any, value: Any, *, dtype: Any = None,
                                  **_: Any) -> Any:
    dtype = dtype or query.dtype
    depth = query.shape[-1]
    logits = jnp.einsum("...qhd,...khd->...hqk", query / jnp.sqrt(depth).astype(dtype), key)
    weights = _softmax_summed_in_bfloat16(logits, dtype).astype(dtype)
    return jnp.einsum("...hqk,...khd->...qhd", weights, value)


class TorchSelfAttention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(32, 4, batch_first=True)

    def forward(self, x: Any) -> Any:
        return self.attention(x, x, x, need_weights=False)[0]


def _attention(attention_fn: Any) -> Any:
    return nn.MultiHeadDotProductAttention(num_heads=4, deterministic=True,
                                           attention_fn=attention_fn)


LONG_SEQUENCES = sequence_batches(features=32, min_length=197, max_length=197, min_batch=2,
                                  max_batch=2, min_value=-2.0, max_value=2.0)


# Measured: the correct port 0.0-0.8 of the budget; the sum in bfloat16 6.5x torch's drift.
def test_attention_softmax_summed_in_bfloat16_fails_its_budget():
    case = dict(torch=TorchSelfAttention, inputs=LONG_SEQUENCES, dtype="bfloat16",
                max_examples=3)
    correct = check_parity(flax=_attention(attention_in_float32), **case)
    assert correct.worst is not None and correct.worst.worst_leaf.tolerance_from == "budget"
    message = _budget_failure(flax=_attention(attention_softmax_in_bfloat16), **case)
    assert "budget (float32 reference): cross rms" in message
    assert "it rounds where torch does not" in message
    assert correct.worst_input is not None
    assert _flax_outputs_differ(correct, _attention(attention_softmax_in_bfloat16),
                                "bfloat16", correct.worst_input.flax)


# LayerNorm over activations of mean about 4 ----------------------------------------------

class LayerNormStatisticsInDtype(nn.LayerNorm):
    """LayerNorm whose mean and variance (E[x^2] - E[x]^2) are computed in the computation
    dtype: in bfloat16 both means are rounded to it, and their difference cancels."""

    @nn.compact
    def __call__(self, x: Any, **_: Any) -> Any:
        features = (x.shape[-1],)
        scale = self.param("scale", self.scale_init, features, self.param_dtype)
        bias = self.param("bias", self.bias_init, features, self.param_dtype)
        x = x.astype(self.dtype or x.dtype)
        in_dtype = _bfloat16_rounded if x.dtype == jnp.bfloat16 else (lambda v: v)
        mean = in_dtype(jnp.mean(x.astype(jnp.float32), -1, keepdims=True))
        mean_of_squares = in_dtype(jnp.mean(jnp.square(x.astype(jnp.float32)), -1,
                                            keepdims=True))
        variance = in_dtype(jnp.maximum(mean_of_squares - mean * mean, 0.0))
        y = (x.astype(jnp.float32) - mean) * jax.lax.rsqrt(variance + self.epsilon)
        return (y * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(x.dtype)


OFFSET_ACTIVATIONS = sequence_batches(features=64, min_length=16, max_length=16, min_batch=4,
                                      max_batch=4, min_value=3.0, max_value=5.0)


# Measured: the correct port (nn.LayerNorm: float32 statistics) 0.0; statistics in bfloat16
# on activations of mean 4, 20x torch's drift.
def test_layer_norm_statistics_in_bfloat16_fail_their_budget():
    case = dict(torch=lambda: torch.nn.LayerNorm(64), inputs=OFFSET_ACTIVATIONS,
                dtype="bfloat16", max_examples=3)
    correct = check_parity(flax=nn.LayerNorm(epsilon=1e-5), **case)
    assert correct.worst is not None and correct.worst.margin < 1 / 3
    message = _budget_failure(flax=LayerNormStatisticsInDtype(epsilon=1e-5), **case)
    assert "budget (float32 reference): cross rms" in message
    assert correct.worst_input is not None
    assert _flax_outputs_differ(correct, LayerNormStatisticsInDtype(epsilon=1e-5), "bfloat16",
                                correct.worst_input.flax)


# A Dense asked for float16 -------------------------------------------------------------

class DenseWithBfloat16Weights(nn.Dense):
    """A Dense whose weights stay bfloat16 (the dtype its checkpoint was trained in), whatever
    the computation dtype: in float16 they lose three of their bits."""

    @nn.compact
    def __call__(self, x: Any) -> Any:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features),
                            self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        dtype = self.dtype or x.dtype
        kernel = kernel.astype(jnp.bfloat16).astype(dtype)
        return x.astype(dtype) @ kernel + bias.astype(dtype)


class DenseComputingInBfloat16(nn.Dense):
    """The reverse: float16 weights, activations computed in bfloat16 (a dtype left hard-coded
    from a TPU port), the result cast back to the dtype asked for."""

    @nn.compact
    def __call__(self, x: Any) -> Any:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features),
                            self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        asked = self.dtype or x.dtype
        dtype = jnp.bfloat16 if asked == jnp.float16 else asked
        return (x.astype(dtype) @ kernel.astype(dtype) + bias.astype(dtype)).astype(asked)


FEATURES = feature_batches(features=128, min_batch=8, max_batch=8)


# Measured: the correct port 0.0-0.05; bfloat16 weights in float16 8.2x torch's drift,
# activations in bfloat16 14x.
@pytest.mark.parametrize("buggy", [DenseWithBfloat16Weights, DenseComputingInBfloat16],
                         ids=["bfloat16-weights", "bfloat16-activations"])
def test_a_float16_dense_rounding_through_bfloat16_fails_its_budget(buggy):
    case = dict(torch=lambda: torch.nn.Linear(128, 128), inputs=FEATURES, dtype="float16",
                max_examples=3)
    correct = check_parity(flax=nn.Dense(128), **case)
    assert correct.worst is not None and correct.worst.worst_leaf.tolerance_from == "budget"
    message = _budget_failure(flax=buggy(128), **case)
    assert "budget (float32 reference): cross rms" in message
    assert correct.worst_input is not None
    assert _flax_outputs_differ(correct, buggy(128), "float16", correct.worst_input.flax)
