"""The settings audit on real torch and Flax layers: matching settings give no finding, each
mismatching setting exactly one, naming the setting with both values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_parity.diagnose.findings import Finding
from pytest_parity.diagnose.settings import audit_settings
from pytest_parity.diagnose.settings_checks import short_text

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
nn = pytest.importorskip("flax.linen")
tnn = torch.nn

IMAGE = (1, 8, 8, 4)  # NHWC, 4 channels
SEQUENCE = (1, 5, 8)  # batch, length, 8 features
TOKENS = jax.ShapeDtypeStruct((1, 5), jnp.int32)
ROOT = "torch (root) <-> flax (root)"


def flax_modules_as_called(flax_module, given, **call_kwargs):
    """Every Flax module called in one (abstract) init, by path, as the plugin captures them."""
    captured = {}

    def record(next_fun, args, kwargs, context):
        if context.method_name == "__call__":
            captured["/".join(context.module.path)] = context.module
        return next_fun(*args, **kwargs)

    spec = given if isinstance(given, jax.ShapeDtypeStruct) else \
        jax.ShapeDtypeStruct(given, jnp.float32)
    with nn.intercept_methods(record):
        jax.eval_shape(lambda x: flax_module.init(jax.random.key(0), x, **call_kwargs), spec)
    return captured


def audit_layer(torch_module, flax_module, given, **call_kwargs):
    modules = flax_modules_as_called(flax_module, given, **call_kwargs)
    return audit_settings(torch_module, modules, [("", "")])


class GELU(nn.Module):
    """A port's own GELU: Linen has none, only the function."""

    approximate: bool = False

    def __call__(self, x):
        return nn.gelu(x, approximate=self.approximate)


MATCHING = {
    "conv-padding-1-vs-pairs": (
        lambda: tnn.Conv2d(4, 8, 3, padding=1),
        nn.Conv(8, (3, 3), padding=((1, 1), (1, 1))), IMAGE),
    "conv-3x3-padding-1-vs-same": (
        lambda: tnn.Conv2d(4, 8, 3, padding=1), nn.Conv(8, (3, 3), padding="SAME"), IMAGE),
    "conv1d-even-kernel-same-vs-same": (
        lambda: tnn.Conv1d(4, 8, 4, padding="same"), nn.Conv(8, (4,), padding="SAME"), (1, 9, 4)),
    "conv-stride-dilation-groups-no-bias": (
        lambda: tnn.Conv2d(4, 8, 3, stride=2, padding=2, dilation=2, groups=2, bias=False),
        nn.Conv(8, (3, 3), strides=2, padding=2, kernel_dilation=2, feature_group_count=2,
                use_bias=False), IMAGE),
    "conv-circular": (
        lambda: tnn.Conv2d(4, 8, 3, padding=1, padding_mode="circular"),
        nn.Conv(8, (3, 3), padding="CIRCULAR"), IMAGE),
    "conv-transpose-4x4-stride-2-padding-1-vs-same": (
        lambda: tnn.ConvTranspose2d(4, 8, 4, stride=2, padding=1),
        nn.ConvTranspose(8, (4, 4), strides=(2, 2), padding="SAME"), IMAGE),
    "linear": (lambda: tnn.Linear(4, 8), nn.Dense(8), (1, 4)),
    "layer-norm": (lambda: tnn.LayerNorm(8), nn.LayerNorm(epsilon=1e-5), SEQUENCE),
    "group-norm": (lambda: tnn.GroupNorm(4, 8), nn.GroupNorm(num_groups=4, epsilon=1e-5),
                   (1, 4, 4, 8)),
    "group-norm-group-size": (lambda: tnn.GroupNorm(4, 8),
                              nn.GroupNorm(num_groups=None, group_size=2, epsilon=1e-5),
                              (1, 4, 4, 8)),
    "batch-norm-eval": (lambda: tnn.BatchNorm2d(4).eval(),
                        nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=1e-5),
                        IMAGE),
    "batch-norm-training": (lambda: tnn.BatchNorm2d(4),
                            nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5),
                            IMAGE),
    "dropout-eval": (lambda: tnn.Dropout(0.1).eval(), nn.Dropout(0.1, deterministic=True),
                     SEQUENCE),
    "attention": (lambda: tnn.MultiheadAttention(8, 2, batch_first=True),
                  nn.MultiHeadDotProductAttention(num_heads=2), SEQUENCE),
    "embedding": (lambda: tnn.Embedding(10, 8), nn.Embed(10, 8), TOKENS),
    "gelu-tanh": (lambda: tnn.GELU(approximate="tanh"), GELU(approximate=True), SEQUENCE),
}


@pytest.mark.parametrize(("make_torch", "flax_module", "given"), MATCHING.values(),
                         ids=MATCHING.keys())
def test_matching_settings_give_no_finding(make_torch, flax_module, given):
    assert audit_layer(make_torch(), flax_module, given) == []


def test_batch_norm_mode_passed_at_call_time_is_not_judged():
    flax_module = nn.BatchNorm(momentum=0.9, epsilon=1e-5)  # use_running_average is a call arg
    findings = audit_layer(tnn.BatchNorm2d(4).eval(), flax_module, IMAGE,
                           use_running_average=False)
    assert findings == []


# id: torch module, Flax module, input, (setting, torch text, flax text), a piece of the note
MISMATCHES = {
    "layer-norm-epsilon": (
        lambda: tnn.LayerNorm(8), nn.LayerNorm(), SEQUENCE, ("epsilon", "1e-05", "1e-06"), ""),
    "layer-norm-bias": (
        lambda: tnn.LayerNorm(8, bias=False), nn.LayerNorm(epsilon=1e-5), SEQUENCE,
        ("bias", "False", "True"), "use_bias"),
    "batch-norm-momentum": (
        lambda: tnn.BatchNorm2d(4).eval(),
        nn.BatchNorm(use_running_average=True, momentum=0.99, epsilon=1e-5), IMAGE,
        ("momentum", "0.1", "0.01"), "flax momentum=0.99, i.e. 0.01 in torch's convention"),
    "batch-norm-eval-vs-batch-statistics": (
        lambda: tnn.BatchNorm2d(4).eval(),
        nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5), IMAGE,
        ("batch statistics", "False (eval mode)", "True (use_running_average=False)"), ""),
    "group-norm-groups": (
        lambda: tnn.GroupNorm(8, 16), nn.GroupNorm(num_groups=4, epsilon=1e-5), (1, 4, 4, 16),
        ("groups", "8", "4"), ""),
    "group-norm-group-size": (
        lambda: tnn.GroupNorm(4, 16), nn.GroupNorm(num_groups=None, group_size=2, epsilon=1e-5),
        (1, 4, 4, 16), ("groups", "4", "8"), "group_size=2"),
    "conv-stride": (
        lambda: tnn.Conv2d(4, 8, 3, stride=2, padding=1), nn.Conv(8, (3, 3), padding=1), IMAGE,
        ("stride", "(2, 2)", "(1, 1)"), ""),
    "conv-padding-vs-valid": (
        lambda: tnn.Conv2d(4, 8, 3, padding=1), nn.Conv(8, (3, 3), padding="VALID"), IMAGE,
        ("padding", "(1, 1)", "'VALID'"),
        "(low, high) per axis: torch ((1, 1), (1, 1)), flax ((0, 0), (0, 0))"),
    "conv-stride-2-padding-1-vs-same": (
        lambda: tnn.Conv2d(4, 8, 3, stride=2, padding=1),
        nn.Conv(8, (3, 3), strides=2, padding="SAME"), IMAGE,
        ("padding", "(1, 1)", "'SAME'"), "flax ((0, 1) or (1, 1), (0, 1) or (1, 1))"),
    "conv-padding-mode": (
        lambda: tnn.Conv2d(4, 8, 3, padding=1, padding_mode="circular"),
        nn.Conv(8, (3, 3), padding=1), IMAGE, ("padding_mode", "'circular'", "'zeros'"), ""),
    "conv-groups": (
        lambda: tnn.Conv2d(4, 8, 3, padding=1, groups=2), nn.Conv(8, (3, 3), padding=1), IMAGE,
        ("groups", "2", "1"), ""),
    "conv-dilation": (
        lambda: tnn.Conv2d(4, 8, 3, padding=2, dilation=2), nn.Conv(8, (3, 3), padding=2), IMAGE,
        ("dilation", "(2, 2)", "(1, 1)"), ""),
    "conv-transpose-padding": (
        lambda: tnn.ConvTranspose2d(4, 8, 4, stride=2),
        nn.ConvTranspose(8, (4, 4), strides=(2, 2), padding="SAME"), IMAGE,
        ("padding", "(0, 0)", "'SAME'"), "flax as torch: padding (1, 1), output_padding (0, 0)"),
    "linear-bias": (
        lambda: tnn.Linear(4, 8), nn.Dense(8, use_bias=False), (1, 4),
        ("bias", "True", "False"), ""),
    "linear-out-features": (
        lambda: tnn.Linear(4, 8), nn.Dense(16), (1, 4), ("out features", "8", "16"), ""),
    "dropout-rate": (
        lambda: tnn.Dropout(0.1).eval(), nn.Dropout(0.2, deterministic=True), SEQUENCE,
        ("rate", "0.1", "0.2"), ""),
    "dropout-training-vs-deterministic": (
        lambda: tnn.Dropout(0.1), nn.Dropout(0.1, deterministic=True), SEQUENCE,
        ("deterministic", "False (training mode)", "True"), ""),
    "attention-heads": (
        lambda: tnn.MultiheadAttention(8, 2, batch_first=True),
        nn.MultiHeadDotProductAttention(num_heads=4), SEQUENCE, ("num_heads", "2", "4"), ""),
    "attention-bias": (
        lambda: tnn.MultiheadAttention(8, 2, bias=False, batch_first=True),
        nn.MultiHeadDotProductAttention(num_heads=2), SEQUENCE, ("bias", "False", "True"), ""),
    "embedding-padding-idx": (
        lambda: tnn.Embedding(10, 8, padding_idx=0), nn.Embed(10, 8), TOKENS,
        ("padding_idx", "0", "None"), "flax Embed has no such option"),
    "gelu-approximate": (
        lambda: tnn.GELU(approximate="tanh"), GELU(), SEQUENCE,
        ("approximate", "'tanh'", "'none'"), "flax approximate=False"),
}


@pytest.mark.parametrize(("make_torch", "flax_module", "given", "expected", "note_part"),
                         MISMATCHES.values(), ids=MISMATCHES.keys())
def test_each_mismatching_setting_is_one_finding(make_torch, flax_module, given, expected,
                                                 note_part):
    findings = audit_layer(make_torch(), flax_module, given)
    assert [(f.audit, f.where, f.what, f.torch, f.flax) for f in findings] == \
        [("settings", ROOT, *expected)]
    assert note_part in findings[0].note


# The mismatches above that change only what training does; every other one changes the
# forward pass.
TRAINING_ONLY = {"batch-norm-momentum", "dropout-rate", "embedding-padding-idx"}


@pytest.mark.parametrize(("make_torch", "flax_module", "given", "name"),
                         [(*case[:3], name) for name, case in MISMATCHES.items()],
                         ids=MISMATCHES.keys())
def test_each_finding_says_whether_it_changes_the_forward_pass_or_training_only(
        make_torch, flax_module, given, name):
    [finding] = audit_layer(make_torch(), flax_module, given)
    assert finding.affects == ("training" if name in TRAINING_ONLY else "forward")
    assert finding.to_record()["affects"] == finding.affects


# id: torch module, Flax module, input, the setting, what it changes
AFFECTS = {
    # a rate matters to the forward pass only where a mask is drawn
    "dropout-rate-both-drawing": (
        lambda: tnn.Dropout(0.1), nn.Dropout(0.2, deterministic=False), SEQUENCE, "rate",
        "forward"),
    "attention-dropout-eval": (
        lambda: tnn.MultiheadAttention(8, 2, dropout=0.1, batch_first=True).eval(),
        nn.MultiHeadDotProductAttention(num_heads=2, deterministic=True), SEQUENCE, "dropout",
        "training"),
    "embedding-scale-grad-by-freq": (
        lambda: tnn.Embedding(10, 8, scale_grad_by_freq=True), nn.Embed(10, 8), TOKENS,
        "scale_grad_by_freq", "training"),
    # torch renormalizes the rows it looks up in the forward pass itself
    "embedding-max-norm": (
        lambda: tnn.Embedding(10, 8, max_norm=1.0), nn.Embed(10, 8), TOKENS, "max_norm",
        "forward"),
}


@pytest.mark.parametrize(("make_torch", "flax_module", "given", "what", "affects"),
                         AFFECTS.values(), ids=AFFECTS.keys())
def test_what_a_setting_changes_depends_on_whether_the_run_uses_it(make_torch, flax_module,
                                                                   given, what, affects):
    findings = audit_layer(make_torch(), flax_module, given)
    assert [(f.what, f.affects) for f in findings if f.what == what] == [(what, affects)]


def test_a_training_only_mismatch_says_so_in_its_line():
    [finding] = audit_layer(tnn.Embedding(10, 8, padding_idx=0), nn.Embed(10, 8), TOKENS)
    assert finding.line() == (f"{ROOT}: padding_idx (training only): torch 0, flax None (flax "
                              "Embed has no such option: torch keeps that row's gradient at "
                              "zero)")


def test_a_nested_model_reports_only_the_mismatching_child():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(8, (3, 3), padding=1, name="stem")(x))
            return nn.Conv(8, (3, 3), strides=2, padding="SAME", name="down")(x)

    torch_model = tnn.Sequential(tnn.Conv2d(4, 8, 3, padding=1), tnn.ReLU(),
                                 tnn.Conv2d(8, 8, 3, stride=2, padding=1))
    modules = flax_modules_as_called(Net(), IMAGE)
    assert sorted(modules) == ["", "down", "stem"]
    findings = audit_settings(torch_model, modules, [("", ""), ("0", "stem"), ("2", "down")])
    assert [(f.where, f.what, f.torch, f.flax) for f in findings] == \
        [("torch 2 <-> flax down", "padding", "(1, 1)", "'SAME'")]
    assert "depends on the input size" in findings[0].note


def test_pairs_it_cannot_judge_give_nothing():
    torch_model = tnn.Sequential(tnn.Conv2d(4, 8, 3, stride=2), tnn.ReLU())
    modules = {"conv": nn.Dense(8), "relu": nn.Dense(8)}  # the wrong Flax class; no kind
    pairs = [("0", "conv"), ("1", "relu"), ("0", "never/called"), ("no.such.module", "conv")]
    assert audit_settings(torch_model, modules, pairs) == []


def test_missing_fields_skip_their_setting_only():
    conv_class = type("Conv", (), {})  # named like nn.Conv, holding only two of its fields
    partial_conv = conv_class()
    partial_conv.kernel_size, partial_conv.strides = (3, 3), 1
    findings = audit_settings(tnn.Conv2d(4, 8, 3, stride=2, padding=1), {"": partial_conv},
                              [("", "")])
    assert findings == [Finding("settings", ROOT, "stride", "(2, 2)", "(1, 1)")]


def test_importing_the_audit_loads_no_framework():
    code = ("import sys, pytest_parity.diagnose.settings; "
            "print(sorted(m for m in ('torch', 'jax', 'flax') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).parents[2]).stdout.strip()
    assert loaded == "[]"


def test_a_mismatch_reads_as_one_line():
    finding = audit_layer(tnn.LayerNorm(8), nn.LayerNorm(), SEQUENCE)[0]
    assert finding.line() == f"{ROOT}: epsilon: torch 1e-05, flax 1e-06"


SHORT_TEXTS = {
    "float": (1e-5, "1e-05"),
    "converted-momentum": (1 - 0.99, "0.01"),
    "pair": ((1, 1), "(1, 1)"),
    "pairs": (((1, 1), (1, 1)), "((1, 1), (1, 1))"),
    "one-axis": ((3,), "(3,)"),
    "string": ("SAME", "'SAME'"),
    "flag": (True, "True"),
    "numpy-int": (np.int64(3), "3"),
}


@pytest.mark.parametrize(("value", "expected"), SHORT_TEXTS.values(), ids=SHORT_TEXTS.keys())
def test_values_are_short_text(value, expected):
    assert short_text(value) == expected
