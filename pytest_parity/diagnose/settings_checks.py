"""How one setting is compared: its short text, equality across conventions, and the checks
that need more than one field read (convolution padding, BatchNorm momentum and mode, groups).

A check takes the torch module and the Flax module and returns None where they agree, else the
torch text, the Flax text (in torch's convention where the two differ) and a note.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any

# What a check says about one setting: None where the sides agree (or it cannot tell), else the
# torch text, the Flax text and a note.
Mismatch = tuple[str, str, str] | None
Check = Callable[[Any, Any], Mismatch]
Reader = Callable[[Any], Any]
Pair = tuple[int, int]


def short_text(value: Any) -> str:
    """Short text for a setting: `1e-05`, `(1, 1)`, `'SAME'`."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        return f"{float(value):.6g}"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Sequence):
        items = [short_text(item) for item in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    return str(value)


def _equal(torch_value: Any, flax_value: Any) -> bool:
    floats = (torch_value, flax_value)
    if all(isinstance(v, Real) and not isinstance(v, bool) for v in floats) and \
            any(isinstance(v, float) for v in floats):
        # A converted momentum (1 - 0.9) is 0.09999999999999998, not 0.1.
        return math.isclose(torch_value, flax_value, rel_tol=1e-9, abs_tol=1e-15)
    return bool(torch_value == flax_value)


def compare(torch_value: Any, flax_value: Any, note: str = "",
            texts: tuple[str, str] | None = None) -> Mismatch:
    """None where the values agree, else both as text (or as `texts`) and the note."""
    if _equal(torch_value, flax_value):
        return None
    torch_text, flax_text = texts or (short_text(torch_value), short_text(flax_value))
    return torch_text, flax_text, note


def same(torch: Reader, flax: Reader, note: str = "") -> Check:
    """A setting both frameworks hold in the same convention."""
    return lambda t, f: compare(torch(t), flax(f), note)


def present(name: str) -> Reader:
    """Whether a torch module holds a tensor (a bias, an affine weight)."""
    return lambda module: getattr(module, name) is not None


def constant(value: Any) -> Reader:
    """The Flax side of an option its module does not have: what it always does."""
    return lambda _module: value


# -- convolutions ---------------------------------------------------------------------------

def flax_kernel(module: Any) -> tuple[int, ...]:
    kernel = module.kernel_size  # Flax reads an int as a 1-D kernel, not a square one
    return (kernel,) if isinstance(kernel, int) else tuple(kernel)


def flax_per_axis(name: str) -> Reader:
    """A Flax stride or dilation per axis, broadcast from None or an int as Flax does."""
    def read(module: Any) -> tuple[int, ...]:
        value = getattr(module, name)
        value = 1 if value is None else value
        return (value,) * len(flax_kernel(module)) if isinstance(value, int) else tuple(value)
    return read


def _effective_kernel(kernel: Sequence[int], dilation: Sequence[int]) -> list[int]:
    return [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]


def _same_pads(k: int, s: int) -> tuple[Pair, ...]:
    """XLA's 'SAME' (low, high) for every input size: total = (ceil(n/s) - 1)*s + k - n,
    which is k - s when s divides n and k - (n mod s) otherwise, never below 0."""
    totals = {max(k - (r if r else s), 0) for r in range(s)}
    return tuple(sorted((total // 2, total - total // 2) for total in totals))


# Flax Conv's padding strings, as the (low, high) pairs each may pad on one axis of effective
# kernel k and stride s; more than one pair: it depends on the input size.
_CONV_STRING_PADS: dict[str, Callable[[int, int], tuple[Pair, ...]]] = {
    "VALID": lambda k, s: ((0, 0),),
    "SAME": _same_pads,
    "CIRCULAR": lambda k, s: (((k - 1) // 2, k // 2),),
    "REFLECT": lambda k, s: (((k - 1) // 2, k // 2),),
    "CAUSAL": lambda k, s: ((k - 1, 0),),
}
# What Flax pads with, in torch's `padding_mode` words; any other padding pads with zeros.
_FLAX_PADDING_MODES = {"CIRCULAR": "circular", "REFLECT": "reflect"}


def _explicit_pads(padding: Any, rank: int) -> tuple[Pair, ...]:
    """Flax's int, or per-axis ints or (low, high) pairs, as pairs."""
    if isinstance(padding, int):
        return ((padding, padding),) * rank
    if len(padding) != rank:
        raise ValueError(f"padding {padding!r} for {rank} axes")
    return tuple((p, p) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in padding)


def _flax_conv_pads(module: Any) -> tuple[tuple[Pair, ...], ...]:
    """Per axis, every (low, high) pair the Flax Conv may pad with."""
    kernel = _effective_kernel(flax_kernel(module), flax_per_axis("kernel_dilation")(module))
    strides = flax_per_axis("strides")(module)
    if isinstance(module.padding, str):
        pads = _CONV_STRING_PADS[module.padding.upper()]
        return tuple(pads(k, s) for k, s in zip(kernel, strides, strict=True))
    return tuple((pair,) for pair in _explicit_pads(module.padding, len(kernel)))


def _torch_conv_pads(module: Any) -> tuple[Pair, ...]:
    kernel = _effective_kernel(module.kernel_size, module.dilation)
    if module.padding == "valid":
        return ((0, 0),) * len(kernel)
    if module.padding == "same":  # torch puts the odd pixel high, as XLA does
        return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel)
    return tuple((p, p) for p in module.padding)


def _pads_text(pads: Sequence[tuple[Pair, ...]]) -> str:
    return f"({', '.join(' or '.join(map(short_text, options)) for options in pads)})"


def conv_padding(t: Any, f: Any) -> Mismatch:
    torch_pads = _torch_conv_pads(t)
    flax_pads = _flax_conv_pads(f)
    if tuple((pair,) for pair in torch_pads) == flax_pads:
        return None
    notes = [f"(low, high) per axis: torch {short_text(torch_pads)}, flax {_pads_text(flax_pads)}"]
    if any(len(options) > 1 for options in flax_pads):
        notes.append("'SAME' with stride > 1 pads (total//2, total - total//2), and the total "
                     "depends on the input size")
    return short_text(t.padding), short_text(f.padding), "; ".join(notes)


def conv_padding_mode(t: Any, f: Any) -> Mismatch:
    padding = f.padding
    mode = _FLAX_PADDING_MODES.get(padding.upper(), "zeros") if isinstance(padding, str) \
        else "zeros"
    return compare(t.padding_mode, mode, f"flax padding {short_text(padding)}")


def _transpose_pads(k: int, s: int, padding: str) -> Pair:
    """lax.conv_transpose's pair for 'SAME'/'VALID' on the stride-dilated input."""
    if padding == "SAME":
        total = k + s - 2
        low = k - 1 if s > k - 1 else math.ceil(total / 2)
    else:
        total = k + s - 2 + max(k - s, 0)
        low = k - 1
    return low, total - low


def conv_transpose_padding(t: Any, f: Any) -> Mismatch:
    # Both sides as the (low, high) padding of the stride-dilated input, which is what each
    # runs: torch's padding p and output_padding op pad (k - 1 - p, k - 1 - p + op).
    kernel = _effective_kernel(t.kernel_size, t.dilation)
    torch_pads = tuple((k - 1 - p, k - 1 - p + op)
                       for k, p, op in zip(kernel, t.padding, t.output_padding, strict=True))
    torch_text = short_text(t.padding) + (
        f", output_padding {short_text(t.output_padding)}" if any(t.output_padding) else "")
    padding = f.padding
    if isinstance(padding, str) and padding.upper() == "CIRCULAR":
        return torch_text, short_text(padding), \
            "flax 'CIRCULAR' wraps the output periodically; torch pads with zeros"
    flax_sizes = _effective_kernel(flax_kernel(f), flax_per_axis("kernel_dilation")(f))
    if isinstance(padding, str):
        strides = flax_per_axis("strides")(f)
        flax_pads = tuple(_transpose_pads(k, s, padding.upper())
                          for k, s in zip(flax_sizes, strides, strict=True))
    else:  # Flax hands explicit pairs to lax.conv_transpose as they are
        flax_pads = _explicit_pads(padding, len(flax_sizes))
    if flax_pads == torch_pads:
        return None
    as_torch = tuple(k - 1 - low for k, (low, _) in zip(flax_sizes, flax_pads, strict=True))
    output_padding = tuple(high - low for low, high in flax_pads)
    return torch_text, short_text(padding), (
        f"(low, high) of the stride-dilated input: torch {short_text(torch_pads)}, flax "
        f"{short_text(flax_pads)}; flax as torch: padding {short_text(as_torch)}, "
        f"output_padding {short_text(output_padding)}")


# -- normalization, dropout, attention, embedding, GELU -------------------------------------

def layer_norm_axes(t: Any, f: Any) -> Mismatch:
    axes = f.reduction_axes
    count = 1 if isinstance(axes, int) else len(axes)
    return compare(len(t.normalized_shape), count,
                   f"torch normalized_shape {short_text(tuple(t.normalized_shape))}, "
                   f"flax reduction_axes {short_text(axes)}")


def group_norm_groups(t: Any, f: Any) -> Mismatch:
    if f.num_groups is not None:
        return compare(t.num_groups, f.num_groups)
    channels, size = t.num_channels, f.group_size
    return compare(t.num_groups, channels // size,
                   f"flax group_size={size}: {channels} channels in groups of {size}")


def batch_norm_momentum(t: Any, f: Any) -> Mismatch:
    # torch: running = (1 - m) * running + m * batch; Flax: ra = m * ra + (1 - m) * batch.
    as_torch = 1 - f.momentum
    notes = [f"flax momentum={short_text(f.momentum)}, i.e. {short_text(as_torch)} in torch's "
             "convention (torch weights the batch by momentum, flax the running average)"]
    if t.momentum is None:
        notes.append("torch momentum=None keeps a cumulative average, which flax has not")
    return compare(t.momentum, as_torch, "; ".join(notes))


def batch_norm_statistics(t: Any, f: Any) -> Mismatch:
    running = f.use_running_average
    if running is None:  # passed at call time: not on the module
        return None
    torch_batch = bool(t.training) or t.running_mean is None
    why = "training mode" if t.training else \
        "track_running_stats=False" if t.running_mean is None else "eval mode"
    return compare(torch_batch, not running, texts=(
        f"{torch_batch} ({why})", f"{not running} (use_running_average={running})"))


def determinism(torch_rate: str, flax_rate: str) -> Check:
    """Whether dropout runs: torch in eval mode, Flax where `deterministic` is set."""
    def check(t: Any, f: Any) -> Mismatch:
        deterministic = f.deterministic
        if deterministic is None or (getattr(t, torch_rate) == 0 and getattr(f, flax_rate) == 0):
            return None  # set at call time, or no dropout either way
        mode = "eval" if not t.training else "training"
        return compare(not t.training, bool(deterministic),
                       texts=(f"{not t.training} ({mode} mode)", str(bool(deterministic))))
    return check


def gelu_approximate(t: Any, f: Any) -> Mismatch:
    return compare(t.approximate, "tanh" if f.approximate else "none",
                   f"flax approximate={f.approximate}")


def dense_features(module: Any) -> Any:
    # Linen's Dense has `features`, NNX's Linear `out_features`; DenseGeneral and LinearGeneral
    # may hold one output axis as a 1-tuple.
    features = module.features if hasattr(module, "features") else module.out_features
    return features[0] if isinstance(features, Sequence) and len(features) == 1 else features
