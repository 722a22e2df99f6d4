"""The diagnosis' pieces: module correspondence, the weight audit, per-module errors, the
trace mode and the picture."""

import numpy as np
import pytest

from pytest_parity.diagnose import aligned_modules, mode
from pytest_parity.diagnose.picture import draw_trace, picture_path
from pytest_parity.diagnose.weights import audit_weights
from pytest_parity.mapping import Mapping, Rule
from pytest_parity.mapping.layer_rules import batch_norm_rules
from pytest_parity.mapping.transforms import OUT_IN_TO_IN_OUT


def _meta_keys(name):
    torch = pytest.importorskip("torch")
    from pytest_parity import registry

    pair = registry.get(name)
    with torch.device("meta"):
        return pair.mapping, list(pair.torch_model().state_dict())


def test_modules_correspond_where_they_hold_the_same_weights():
    mapping, keys = _meta_keys("resnet50")
    pairs = {(p.torch, p.flax) for p in aligned_modules(mapping, keys)}
    assert {("", ""), ("layer1", "layer1"), ("layer1.0", "layer1/block0"),
            ("layer1.0.downsample", "layer1/block0/downsample"),
            ("layer1.0.downsample.0", "layer1/block0/downsample/conv"),
            ("layer4.2.bn3", "layer4/block2/bn3"), ("fc", "fc")} <= pairs
    assert len(pairs) == 132  # 1 model, 4 stages, 16 blocks, 4 shortcuts, 53 conv, 53 bn, fc


def test_a_container_holding_other_weights_than_any_flax_module_corresponds_to_none():
    mapping, keys = _meta_keys("vit_b_16")
    pairs = dict((p.torch, p.flax) for p in aligned_modules(mapping, keys))
    assert pairs["encoder"] == "encoder" and "encoder.layers" not in pairs  # no final ln there
    assert pairs["heads"] == "head" and "heads.head" not in pairs  # the outer one pairs first
    assert pairs["encoder.layers.encoder_layer_0.self_attention"] == "encoder/layer0/attention"


SQUARE = Mapping("square", (Rule("fc/kernel", "fc.weight", "IO", transform=OUT_IN_TO_IN_OUT),
                            Rule("fc/bias", "fc.bias", "O"), *batch_norm_rules("bn", "bn")))


def _state():
    rng = np.random.default_rng(0)
    return {"fc.weight": rng.normal(size=(4, 4)).astype(np.float32),
            "fc.bias": rng.normal(size=4).astype(np.float32),
            "bn.weight": rng.normal(size=4).astype(np.float32),
            "bn.bias": rng.normal(size=4).astype(np.float32),
            "bn.running_mean": rng.normal(size=4).astype(np.float32),
            "bn.running_var": rng.uniform(1, 2, size=4).astype(np.float32),
            "bn.num_batches_tracked": np.array(3)}


def _flax(state):
    arrays, _ = SQUARE.torch_to_canonical(state)
    return SQUARE.canonical_to_flax(arrays)


def test_a_correct_conversion_has_no_weight_finding():
    assert audit_weights(SQUARE, _state(), _flax(_state())) == []


@pytest.mark.parametrize(("mistake", "where", "hint"), [
    (lambda v, s: v["params"]["fc"].update(kernel=s["fc.weight"]), "fc/kernel",
     "equals the torch tensor without the transform"),
    (lambda v, s: v["params"]["bn"].update(scale=s["bn.running_var"]), "bn/scale",
     "equals torch's value for bn/var"),
    (lambda v, s: v["params"]["fc"].update(
        bias=s["fc.bias"].astype(np.float16).astype(np.float32) + 1e-3), "fc/bias", "max abs"),
    # a bias left at zeros equals any zero tensor of its shape (before: MiniLM's layer-0 output
    # bias "equals torch's value for pooler/dense/bias", zeros too): the constant is said
    (lambda v, s: v["params"]["fc"].update(bias=np.zeros_like(s["fc.bias"])), "fc/bias",
     "every value is 0"),
], ids=["kernel-not-transposed", "scale-is-the-variance", "bias-off", "bias-left-at-zeros"])
def test_a_wrong_weight_is_named_with_what_it_equals(mistake, where, hint):
    state = _state()
    variables = _flax(state)
    mistake(variables, state)
    findings = audit_weights(SQUARE, state, variables)
    assert [f.where for f in findings] == [where]
    assert hint in findings[0].note and findings[0].audit == "weights"


def test_a_fused_split_is_named_by_its_concrete_torch_key():
    """The zoo ViT's q/k/v come from one in_proj tensor per block: a wrong piece names that
    block's tensor, not the rule's pattern with `{i}`."""
    torch = pytest.importorskip("torch")
    from pytest_parity import registry

    pair = registry.get("vit_ti_16")
    with torch.device("meta"):
        shapes = {key: tuple(value.shape) for key, value in pair.torch_model().state_dict()
                  .items()}
    rng = np.random.default_rng(0)
    state = {key: rng.normal(size=shape).astype(np.float32) for key, shape in shapes.items()}
    arrays, _ = pair.mapping.torch_to_canonical(state)
    variables = pair.mapping.canonical_to_flax(arrays)
    attention = variables["params"]["encoder"]["layer3"]["attention"]
    attention["key"]["bias"] = attention["key"]["bias"] + np.float32(0.5)  # not a view's edit
    findings = audit_weights(pair.mapping, state, variables)
    assert [f.where for f in findings] == ["encoder/layer3/attention/key/bias"]
    assert "torch encoder.layers.encoder_layer_3.self_attention.in_proj_bias, piece 2 of 3" \
        in findings[0].note and "{i}" not in findings[0].note


def _embedding_diagnosis(training):
    """A correct port of an Embedding with padding_idx (as BERT's), which Flax's Embed lacks:
    a difference in what training does, never in the forward pass."""
    torch = pytest.importorskip("torch")
    nn = pytest.importorskip("flax.linen")
    import jax

    from pytest_parity.diagnose import diagnose
    from pytest_parity.mapping.layer_rules import embedding_rules, linear_rules
    from pytest_parity.run.sides import placed_variables

    class TorchNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(10, 8, padding_idx=0)
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, ids):
            return self.fc(self.embed(ids))

    class FlaxNet(nn.Module):
        @nn.compact
        def __call__(self, ids):
            return nn.Dense(4, name="fc")(nn.Embed(10, 8, name="embed")(ids))

    mapping = Mapping("embedded", (*embedding_rules("embed", "embed"), *linear_rules("fc", "fc")))
    torch.manual_seed(0)
    model = TorchNet().eval()
    arrays, _ = mapping.torch_to_canonical({k: v.numpy() for k, v in model.state_dict().items()})
    ids = np.array([[0, 3, 5, 0]], np.int32)
    return diagnose(mapping=mapping, torch_model=model, flax_module=FlaxNet(),
                    flax_variables=placed_variables(mapping.canonical_to_flax(arrays), "cpu",
                                                    "float32"),
                    torch_inputs=torch.from_numpy(ids).long(), flax_inputs=jax.numpy.asarray(ids),
                    image_rank=None, tolerance={}, training=training)


def test_a_forward_diagnosis_leaves_out_what_changes_training_only():
    diagnosis = _embedding_diagnosis(training=False)
    assert diagnosis.settings == [] and not diagnosis.found
    assert "  settings audit: nothing differs" in diagnosis.lines()


def test_a_training_diagnosis_reports_what_changes_training_only():
    diagnosis = _embedding_diagnosis(training=True)
    assert [(f.what, f.affects) for f in diagnosis.settings] == [("padding_idx", "training")]
    assert diagnosis.found


def test_a_missing_flax_variable_is_a_finding():
    variables = _flax(_state())
    del variables["params"]["fc"]["bias"]
    findings = audit_weights(SQUARE, _state(), variables)
    assert [(f.where, f.what, f.flax) for f in findings] == [("fc/bias", "missing", "absent")]


def test_the_trace_mode_applies_inside_its_block_only():
    assert mode.current() == "on-failure" and mode.wanted(False) and not mode.wanted(True)
    with mode.applied("always"):
        assert mode.wanted(True)
        with mode.applied("off"):
            assert not mode.wanted(False)
    assert mode.current() == "on-failure"
    with pytest.raises(ValueError, match="sometimes"), mode.applied("sometimes"):
        pass


@pytest.mark.parametrize("enabled_before", [True, False])
def test_a_diagnosis_runs_without_the_cyclic_collector_and_leaves_it_as_it_was(
        monkeypatch, enabled_before):
    """Tracing allocates objects by the hundred thousand; collections during it walked every
    object of the process (docs/benchmarks.md): the collector is off while a diagnosis runs,
    and as it was after, also when the diagnosis fails."""
    import gc

    pytest.importorskip("jax")
    from pytest_parity.diagnose import diagnosis

    seen = []

    def capture_torch(*args):
        seen.append(gc.isenabled())
        raise RuntimeError("stop here")

    monkeypatch.setattr(diagnosis, "capture_torch", capture_torch)
    (gc.enable if enabled_before else gc.disable)()
    try:
        with pytest.raises(RuntimeError, match="stop here"):
            diagnosis.diagnose(mapping=None, torch_model=_StateOnly(), flax_module=None,
                               flax_variables={}, torch_inputs=None, flax_inputs=None,
                               image_rank=None, tolerance={})
        assert seen == [False] and gc.isenabled() is enabled_before
    finally:
        gc.enable()


class _StateOnly:
    def state_dict(self):
        return {}


def test_module_errors_under_the_policy():
    from pytest_parity.diagnose.distance import errors_between

    torch_out = np.array([[1.0, np.nan, np.inf]], np.float32)
    same = errors_between([torch_out.copy()], [torch_out], 4, {})
    assert (same.max_abs, same.margin) == (0.0, 0.0)  # NaN and inf where the other has them
    off = errors_between([torch_out + np.float32(1e-4)], [torch_out], 4, {})
    assert off.margin == pytest.approx(1e-4 / (1e-5 + 1.3e-6), rel=1e-3)
    moved = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)  # NCHW
    assert errors_between([moved.transpose(0, 2, 3, 1)], [moved], 4, {}).margin == 0.0
    other_shape = errors_between([np.zeros((1, 5), np.float32)], [np.zeros((1, 4), np.float32)],
                                 4, {})
    assert other_shape.margin == float("inf")
    exact = errors_between([np.array([1e-3], np.float32)], [np.array([0.0], np.float32)], None,
                           {"rtol": 1e-3, "atol": 0.0})
    assert exact.margin == float("inf")  # nothing is allowed where expected is 0
    nan_moved = errors_between([np.array([np.nan], np.float32)], [np.array([1.0], np.float32)],
                               None, {})
    assert nan_moved.margin == float("inf")


def test_the_picture_marks_the_culprit(tmp_path):
    pytest.importorskip("matplotlib")
    modules = [{"torch": name, "output_margin": margin, "alone_margin": alone}
               for name, margin, alone in [("", 40.0, 40.0), ("a", 0.1, None),
                                           ("b", 52.0, 52.0), ("c", 30.0, 0.2)]]
    record = {"test": "t.py::test[cpu-float32]", "name": "logits",
              "diagnosis": {"modules": modules, "culprit": modules[2]}}
    path = picture_path(tmp_path / "report.json", record["test"], record["name"])
    assert path.name == "report.t.py_test_cpu-float32_.logits.png"
    assert draw_trace(record, path).read_bytes()[:4] == b"\x89PNG"


def test_the_pictures_x_axis_names_the_modules(tmp_path):
    """Issue 29: the ticks were indices 0-5; each is now the torch module's name, a long
    one shortened to its last parts, rotated to stay readable."""
    pytest.importorskip("matplotlib")
    from matplotlib import pyplot as plt

    from pytest_parity.diagnose.picture import trace_figure

    names = ["", "conv1", "layer1.0.bn1",
             "encoder.layers.encoder_layer_11.mlp.3", "averylongmodulenamewithoutanydots_at_all"]
    modules = [{"torch": name, "output_margin": 0.5, "alone_margin": None} for name in names]
    record = {"test": "t.py::test[cpu-float32]", "name": "logits",
              "diagnosis": {"modules": modules, "culprit": None}}
    figure = trace_figure(record)
    try:
        ticks = figure.axes[0].get_xticklabels()
        assert [tick.get_text() for tick in ticks] == [
            "(root)", "conv1", "layer1.0.bn1", "…encoder_layer_11.mlp.3",
            "…" + names[4][-23:]]
        assert {tick.get_rotation() for tick in ticks} == {90.0}
    finally:
        plt.close(figure)
