"""Hypothesis strategies for parity inputs: drawn once, handed to each framework in its layout.

Each strategy draws a `Batch`: `batch.torch` is what the torch module takes, `batch.flax` what
the Flax module takes (an image batch is NCHW for torch and NHWC for Flax; other inputs are the
same array on both sides). Values are finite, within [min_value, max_value], and come from a
seeded numpy generator, so a drawn example is cheap and reproducible; hypothesis shrinks the
shape (to the smallest bucket, batch 1) and the seed.

Shapes are drawn from a few buckets (`bucketed=True`, the default): sizes are the powers of two
between min and max, batches 1, 2 and 4 within bounds, so each test compiles a bounded number
of XLA programs. `bucketed=False` draws every size in range (a compilation per new shape).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ml_dtypes
import numpy as np
from hypothesis import strategies as st

from pytest_parity.errors import ParityError
from pytest_parity.inputs import Input
from pytest_parity.layouts import Layout

# The dtypes a drawn batch may hold (bfloat16 through ml_dtypes, as numpy has none).
FLOATING_DTYPES = ("float16", "bfloat16", "float32", "float64")


class StrategyArgumentError(ParityError, ValueError):
    """A strategy argument out of range; the message proposes a fix."""


class Batch:
    """One drawn input. Not a dataclass: hypothesis would print its arrays in full."""

    def __init__(self, torch: np.ndarray, flax: np.ndarray, layout: Layout, seed: int) -> None:
        self.torch, self.flax, self.layout, self.seed = torch, flax, layout, seed

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' printer
        printer.text(repr(self))

    def __repr__(self) -> str:  # what hypothesis prints for a falsifying example
        values = self.torch.astype(np.float64)
        summary = (f", min={values.min():.3g}, max={values.max():.3g}" if values.size else "")
        return (f"Batch(torch shape={self.torch.shape}, flax shape={self.flax.shape}, "
                f"dtype={self.torch.dtype}, seed={self.seed}{summary})")


def _positive(function: str, name: str, value: Any, example: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise StrategyArgumentError(f"{function}: {name}={value!r} must be a positive integer, "
                                    f"e.g. {example}")
    return int(value)


def _bounds(function: str, name: str, low: Any, high: Any, example: str) -> tuple[int, int]:
    low = _positive(function, f"min_{name}", low, example)
    high = _positive(function, f"max_{name}", high, example)
    if low > high:
        raise StrategyArgumentError(
            f"{function}: min_{name}={low} > max_{name}={high}; swap them, or set "
            f"max_{name} >= {low}, e.g. {function}(..., min_{name}={high}, max_{name}={low})")
    return low, high


def _value_range(function: str, min_value: float, max_value: float) -> tuple[float, float]:
    if not (np.isfinite(min_value) and np.isfinite(max_value) and min_value < max_value):
        raise StrategyArgumentError(
            f"{function}: min_value={min_value!r}, max_value={max_value!r} must be finite with "
            f"min_value < max_value, e.g. {function}(..., min_value=-1.0, max_value=1.0)")
    return float(min_value), float(max_value)


def _floating_dtype(function: str, dtype: Any, example: str) -> np.dtype:
    """A dtype name (or numpy dtype) of FLOATING_DTYPES as a numpy dtype."""
    try:  # None is no dtype here (numpy would read it as float64)
        name = dtype if isinstance(dtype, str) or dtype is None else np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in FLOATING_DTYPES:
        raise StrategyArgumentError(f"{function}: dtype={dtype!r} must be one of "
                                    f"{', '.join(FLOATING_DTYPES)}, e.g. {example}")
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def _sizes(low: int, high: int, bucketed: bool) -> st.SearchStrategy[int]:
    if not bucketed:
        return st.integers(low, high)
    buckets = sorted({low, high, *(2**k for k in range(high.bit_length() + 1)
                                   if low <= 2**k <= high)})
    return st.sampled_from(buckets)


def _batches(low: int, high: int, bucketed: bool) -> st.SearchStrategy[int]:
    if not bucketed:
        return st.integers(low, high)
    return st.sampled_from(sorted({low, *(b for b in (1, 2, 4) if low <= b <= high)}))


def _values(shape: tuple[int, ...], seed: int, low: float, high: float,
            dtype: np.dtype) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(dtype)


_seeds = st.integers(0, 2**32 - 1)


def image_batches(*, channels: int, min_size: int = 8, max_size: int = 32, min_batch: int = 1,
                  max_batch: int = 4, min_value: float = -1.0, max_value: float = 1.0,
                  square: bool = True, bucketed: bool = True, dtype: str = "float32"
                  ) -> st.SearchStrategy[Batch]:
    """Image batches: torch gets (N, C, H, W), Flax the same values as (N, H, W, C)."""
    example = f"image_batches(channels={channels if channels else 3}, min_size=8, max_size=32)"
    channels = _positive("image_batches", "channels", channels, example)
    sizes = _bounds("image_batches", "size", min_size, max_size, example)
    batches = _bounds("image_batches", "batch", min_batch, max_batch, example)
    low, high = _value_range("image_batches", min_value, max_value)
    values_dtype = _floating_dtype("image_batches", dtype, example)

    @st.composite
    def drawn(draw: Any) -> Batch:
        batch = draw(_batches(*batches, bucketed))
        height = draw(_sizes(*sizes, bucketed))
        width = height if square else draw(_sizes(*sizes, bucketed))
        seed = draw(_seeds)
        nchw = _values((batch, channels, height, width), seed, low, high, values_dtype)
        return Batch(nchw, Layout.IMAGE.to_flax(nchw), Layout.IMAGE, seed)

    return drawn()


def sequence_batches(*, features: int, min_length: int = 1, max_length: int = 16,
                     min_batch: int = 1, max_batch: int = 4, min_value: float = -1.0,
                     max_value: float = 1.0, bucketed: bool = True, dtype: str = "float32"
                     ) -> st.SearchStrategy[Batch]:
    """Token embeddings (N, T, features), the same layout in both frameworks."""
    example = f"sequence_batches(features={features if features else 64}, max_length=16)"
    features = _positive("sequence_batches", "features", features, example)
    lengths = _bounds("sequence_batches", "length", min_length, max_length, example)
    batches = _bounds("sequence_batches", "batch", min_batch, max_batch, example)
    low, high = _value_range("sequence_batches", min_value, max_value)
    values_dtype = _floating_dtype("sequence_batches", dtype, example)

    @st.composite
    def drawn(draw: Any) -> Batch:
        shape = (draw(_batches(*batches, bucketed)), draw(_sizes(*lengths, bucketed)),
                 features)
        seed = draw(_seeds)
        values = _values(shape, seed, low, high, values_dtype)
        return Batch(values, values, Layout.SAME, seed)

    return drawn()


def feature_batches(*, features: int, min_batch: int = 1, max_batch: int = 8,
                    min_value: float = -1.0, max_value: float = 1.0, bucketed: bool = True,
                    dtype: str = "float32") -> st.SearchStrategy[Batch]:
    """Feature vectors (N, features), the same layout in both frameworks."""
    example = f"feature_batches(features={features if features else 64})"
    features = _positive("feature_batches", "features", features, example)
    batches = _bounds("feature_batches", "batch", min_batch, max_batch, example)
    low, high = _value_range("feature_batches", min_value, max_value)
    values_dtype = _floating_dtype("feature_batches", dtype, example)

    @st.composite
    def drawn(draw: Any) -> Batch:
        shape = (draw(_batches(*batches, bucketed)), features)
        seed = draw(_seeds)
        values = _values(shape, seed, low, high, values_dtype)
        return Batch(values, values, Layout.SAME, seed)

    return drawn()


def token_batches(*, vocab_size: int, min_length: int = 1, max_length: int = 16,
                  min_batch: int = 1, max_batch: int = 4, bucketed: bool = True
                  ) -> st.SearchStrategy[Batch]:
    """Token ids (N, T) in [0, vocab_size), int64 for torch and int32 for Flax."""
    example = f"token_batches(vocab_size={vocab_size if vocab_size else 1000})"
    vocab_size = _positive("token_batches", "vocab_size", vocab_size, example)
    lengths = _bounds("token_batches", "length", min_length, max_length, example)
    batches = _bounds("token_batches", "batch", min_batch, max_batch, example)

    @st.composite
    def drawn(draw: Any) -> Batch:
        shape = (draw(_batches(*batches, bucketed)), draw(_sizes(*lengths, bucketed)))
        seed = draw(_seeds)
        ids = np.random.default_rng(seed).integers(0, vocab_size, shape)
        return Batch(ids.astype(np.int64), ids.astype(np.int32), Layout.SAME, seed)

    return drawn()


def inputs_for(torch_module: Any, **options: Any) -> st.SearchStrategy[Batch]:
    """Inputs shaped by a torch layer's configuration: image batches with its in_channels or
    num_features, feature vectors with its in_features, sequences with its normalized shape or
    embed dim, token ids below its num_embeddings. `options` go to that strategy."""
    kind = type(torch_module).__name__
    if hasattr(torch_module, "in_channels"):  # Conv2d, ConvTranspose2d
        return image_batches(channels=torch_module.in_channels, **options)
    if kind in ("BatchNorm2d", "GroupNorm"):
        channels = getattr(torch_module, "num_features", None) or torch_module.num_channels
        return image_batches(channels=channels, **options)
    if hasattr(torch_module, "in_features"):  # Linear
        return feature_batches(features=torch_module.in_features, **options)
    if kind == "LayerNorm":
        return sequence_batches(features=torch_module.normalized_shape[-1], **options)
    if kind == "MultiheadAttention":
        return sequence_batches(features=torch_module.embed_dim, **options)
    if kind == "Embedding":
        return token_batches(vocab_size=torch_module.num_embeddings, **options)
    raise StrategyArgumentError(
        f"inputs_for: cannot tell the input shape of a torch {kind}; pass inputs= a strategy, "
        f"e.g. inputs=image_batches(channels=3) or sequence_batches(features=64)")


def declared_inputs(declared: Sequence[Input]) -> st.SearchStrategy[dict[str, np.ndarray]]:
    """A pair's named inputs (`Pair.inputs`): a dict of arrays by name, each drawn by the
    input's own strategy where it declares one, else a seeded example of its declared shape
    (token ids in range, an attention mask padded at the end of each row)."""
    own = {d.name: d.strategy() for d in declared if d.strategy is not None}

    @st.composite
    def drawn(draw: Any) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(draw(_seeds))
        return {d.name: draw(own[d.name]) if d.name in own else d.example(rng)
                for d in declared}

    return drawn()
