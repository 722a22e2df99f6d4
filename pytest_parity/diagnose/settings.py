"""The settings audit: the hyperparameters of each aligned module pair that change numerics.

Weights can agree bit for bit while the port computes something else: an epsilon left at Flax's
default (1e-6, torch 1e-5), a BatchNorm momentum in the other framework's convention, a stride,
a padding or a train/eval mode that differs. Each pair is read by its torch class's kind (found
by class name in a table, so neither framework is imported), each setting compared where both
sides have it; a mismatch is one Finding, the Flax value in torch's convention where they differ,
labelled by what it changes: the forward pass, or only training (a gradient, a running
statistic's update, the mask of a dropout that draws none in this run).
Linen modules and NNX modules are read alike: NNX keeps Linen's field names (`epsilon`,
`momentum` in Linen's convention, `strides`, `feature_group_count`...) as attributes, and names
two classes otherwise (`Linear` with `out_features`, `MultiHeadAttention`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from pytest_parity.diagnose.findings import Affects, Finding
from pytest_parity.diagnose.modules import ModulePair
from pytest_parity.diagnose.settings_checks import (
    Check,
    batch_norm_momentum,
    batch_norm_statistics,
    constant,
    conv_padding,
    conv_padding_mode,
    conv_transpose_padding,
    dense_features,
    determinism,
    flax_kernel,
    flax_per_axis,
    gelu_approximate,
    group_norm_groups,
    layer_norm_axes,
    present,
    same,
)

# A diagnosis runs after a failure: an odd or missing field costs its one setting, never the
# report that explains the failure.
_UNREADABLE = (AttributeError, TypeError, ValueError, KeyError)

_EPSILON = ("epsilon", same(attrgetter("eps"), attrgetter("epsilon")))
_BIAS = ("bias", same(present("bias"), attrgetter("use_bias"), "flax use_bias"))
_SCALE = ("scale", same(present("weight"), attrgetter("use_scale"), "flax use_scale"))
_CONV_SHAPE = (
    ("kernel size", same(lambda t: tuple(t.kernel_size), flax_kernel)),
    ("stride", same(lambda t: tuple(t.stride), flax_per_axis("strides"))),
    ("dilation", same(lambda t: tuple(t.dilation), flax_per_axis("kernel_dilation"))),
    _BIAS,
)
_TORCH_ONLY = "flax Embed has no such option"


@dataclass(frozen=True)
class _Kind:
    """The Flax classes a torch kind may be ported to (None: any), and its settings."""

    flax_classes: tuple[str, ...] | None
    checks: tuple[tuple[str, Check], ...]


_KINDS: dict[str, _Kind] = {
    "conv": _Kind(("Conv",), (
        *_CONV_SHAPE,
        ("padding", conv_padding),
        ("padding_mode", conv_padding_mode),
        ("groups", same(attrgetter("groups"), attrgetter("feature_group_count"))),
        ("input_dilation", same(lambda t: (1,) * len(t.kernel_size),
                                flax_per_axis("input_dilation"),
                                "torch convolutions do not dilate their input")),
    )),
    # transpose_kernel is left out: with False the port flips the kernel when converting, which
    # is the weight audit's business; both forms compute the same given the right weights.
    "conv_transpose": _Kind(("ConvTranspose",), (
        *_CONV_SHAPE,
        ("padding", conv_transpose_padding),
        ("groups", same(attrgetter("groups"), constant(1), "flax ConvTranspose has no groups")),
    )),
    "linear": _Kind(("Dense", "DenseGeneral", "Linear", "LinearGeneral"), (
        _BIAS, ("out features", same(attrgetter("out_features"), dense_features)))),
    "layer_norm": _Kind(("LayerNorm",), (
        _EPSILON, _SCALE, _BIAS, ("normalized axes", layer_norm_axes))),
    "group_norm": _Kind(("GroupNorm",), (
        ("groups", group_norm_groups), _EPSILON, _SCALE, _BIAS)),
    "batch_norm": _Kind(("BatchNorm",), (
        _EPSILON, ("momentum", batch_norm_momentum),
        ("batch statistics", batch_norm_statistics), _SCALE, _BIAS)),
    # Dropout1d/2d/3d drop whole channels; Flax does that with broadcast_dims, whose axes
    # depend on the port's layout, so only the rate and the mode are compared.
    "dropout": _Kind(("Dropout",), (
        ("rate", same(attrgetter("p"), attrgetter("rate"))),
        ("deterministic", determinism("p", "rate")))),
    "attention": _Kind(("MultiHeadDotProductAttention", "MultiHeadAttention"), (
        ("num_heads", same(attrgetter("num_heads"), attrgetter("num_heads"))),
        ("dropout", same(attrgetter("dropout"), attrgetter("dropout_rate"))),
        ("deterministic", determinism("dropout", "dropout_rate")),
        ("bias", same(present("in_proj_bias"), attrgetter("use_bias"), "flax use_bias")),
        ("add_bias_kv", same(present("bias_k"), constant(False),
                             "flax attention has no learned key/value bias")),
        ("add_zero_attn", same(attrgetter("add_zero_attn"), constant(False),
                               "flax attention appends no zero key/value")),
    )),
    "embedding": _Kind(("Embed",), (
        ("num_embeddings", same(attrgetter("num_embeddings"), attrgetter("num_embeddings"))),
        ("features", same(attrgetter("embedding_dim"), attrgetter("features"))),
        ("padding_idx", same(attrgetter("padding_idx"), constant(None),
                             f"{_TORCH_ONLY}: torch keeps that row's gradient at zero")),
        ("max_norm", same(attrgetter("max_norm"), constant(None),
                          f"{_TORCH_ONLY}: torch renormalizes the rows it looks up")),
        ("scale_grad_by_freq", same(attrgetter("scale_grad_by_freq"), constant(False),
                                    f"{_TORCH_ONLY}: torch scales gradients by frequency")),
    )),
    # Flax has no GELU module: a port's own module with an `approximate` field is compared.
    "gelu": _Kind(None, (("approximate", gelu_approximate),)),
}


def _always(_torch_module: Any, _flax_module: Any) -> bool:
    return True


def _draws_no_mask(torch_module: Any, flax_module: Any) -> bool:
    """Whether neither side drops anything in this run (torch in eval mode, the Flax module
    deterministic, or given that at a call the audit cannot read), so that a dropout rate
    changes training only."""
    deterministic = getattr(flax_module, "deterministic", None)
    return not torch_module.training and deterministic is not False


# The settings that change only what training does, by name (each names one kind's setting),
# and when: never the outputs of this forward pass.
_TRAINING_ONLY: dict[str, Callable[[Any, Any], bool]] = {
    "padding_idx": _always,  # the forward pass looks that row up like any other
    "scale_grad_by_freq": _always,
    "momentum": _always,  # it weighs the running statistics' updates, never the output
    "rate": _draws_no_mask,  # Dropout's
    "dropout": _draws_no_mask,  # attention's
}

_TORCH_KINDS: dict[str, str] = {
    **dict.fromkeys(("Conv1d", "Conv2d", "Conv3d"), "conv"),
    **dict.fromkeys(("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"), "conv_transpose"),
    **dict.fromkeys(("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"), "batch_norm"),
    **dict.fromkeys(("Dropout", "Dropout1d", "Dropout2d", "Dropout3d"), "dropout"),
    "Linear": "linear",
    "LayerNorm": "layer_norm",
    "GroupNorm": "group_norm",
    "MultiheadAttention": "attention",
    "Embedding": "embedding",
    "GELU": "gelu",
}


def _class_names(module: Any) -> list[str]:
    return [cls.__name__ for cls in type(module).__mro__]


def _kind_of(torch_module: Any, flax_module: Any) -> _Kind | None:
    """The pair's kind by the torch class (or its nearest base), if the Flax class fits it."""
    kind_names = (_TORCH_KINDS.get(name) for name in _class_names(torch_module))
    kind = _KINDS.get(next((name for name in kind_names if name), ""))
    if kind is None or (kind.flax_classes is not None and
                        not set(kind.flax_classes) & set(_class_names(flax_module))):
        return None
    return kind


def _affects(what: str, torch_module: Any, flax_module: Any) -> Affects:
    training_only = _TRAINING_ONLY.get(what)
    return "training" if training_only and training_only(torch_module, flax_module) \
        else "forward"


def _audit_pair(torch_module: Any, flax_module: Any, where: str) -> list[Finding]:
    kind = _kind_of(torch_module, flax_module)
    findings = []
    for what, check in kind.checks if kind else ():
        try:
            mismatch = check(torch_module, flax_module)
        except _UNREADABLE:
            continue
        if mismatch is not None:
            findings.append(Finding("settings", where, what, *mismatch,
                                    affects=_affects(what, torch_module, flax_module)))
    return findings


def audit_settings(torch_model: Any, flax_modules: Mapping[str, Any],
                   pairs: Sequence[tuple[str, str]]) -> list[Finding]:
    """For each aligned pair (torch module name as in named_modules(), Flax module path joined
    with '/'), compare the settings that change numerics; one Finding per mismatch."""
    findings = []
    for torch_name, flax_path in pairs:
        if flax_path not in flax_modules:  # never called in the forward pass
            continue
        try:
            torch_module = torch_model.get_submodule(torch_name)
        except AttributeError:
            continue
        where = ModulePair(torch_name, flax_path).label()
        findings += _audit_pair(torch_module, flax_modules[flax_path], where)
    return findings
