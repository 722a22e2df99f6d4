"""The culprit search on small two-layer nets: a stem, then a block with one Linear, called the
ways real ports call their modules (keyword arrays, flags, scalars first), with a bug in the
block's own code; and the diagnosis never hides the failure it explains."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = pytest.importorskip("flax.linen")

from pytest_parity.diagnose import diagnose  # noqa: E402
from pytest_parity.mapping import Mapping  # noqa: E402
from pytest_parity.mapping.layer_rules import linear_rules  # noqa: E402
from pytest_parity.run.sides import placed_variables  # noqa: E402

MAPPING = Mapping("two", (*linear_rules("stem", "stem"), *linear_rules("blk.fc", "blk/fc")))
INPUTS = np.random.default_rng(0).normal(0, 3, (4, 16)).astype(np.float32)


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 16)

    def forward(self, x, shift=None, train=False):
        return self.fc(x) + (0 if shift is None else shift)


class TorchNet(torch.nn.Module):
    def __init__(self, call):
        super().__init__()
        self.stem, self.blk, self.call = torch.nn.Linear(16, 16), TorchBlock(), call

    def forward(self, x):
        return self.call(self.blk, self.stem(x))


def flax_net(block_call, net_call):
    class Block(nn.Module):
        @nn.compact
        def __call__(self, *args, **kwargs):
            return block_call(nn.Dense(16, name="fc"), *args, **kwargs)

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return net_call(Block(name="blk"), nn.Dense(16, name="stem")(x))

    return Net()


def _traced(torch_model, flax_module, mapping=MAPPING, flax_inputs=INPUTS, **options):
    """The diagnosis of `torch_model()` (built after seeding torch) against `flax_module` on
    its weights through `mapping`, on INPUTS (the Flax side on `flax_inputs`)."""
    import jax

    torch.manual_seed(0)
    model = torch_model()
    arrays, _ = mapping.torch_to_canonical({k: v.numpy() for k, v in model.state_dict().items()})
    variables = placed_variables(mapping.canonical_to_flax(arrays), "cpu", "float32")
    return diagnose(mapping=mapping, torch_model=model, flax_module=flax_module,
                    flax_variables=variables, torch_inputs=torch.from_numpy(INPUTS),
                    flax_inputs=jax.numpy.asarray(flax_inputs), image_rank=None, tolerance={},
                    **options)


def _diagnosis(torch_call, block_call, net_call, **options):
    return _traced(lambda: TorchNet(torch_call).eval(), flax_net(block_call, net_call),
                   **options)


CALLS = {  # torch's call of the block, the Flax block's body (its bug: * 1.01), Flax's call
    "array-keyword": (lambda blk, x: blk(x, shift=x),
                      lambda fc, x, *, shift: fc(x) * 1.01 + shift,
                      lambda blk, x: blk(x, shift=x)),
    "flag-after-the-array": (lambda blk, x: blk(x, None, False),
                             lambda fc, x, train: fc(x) * 1.01,
                             lambda blk, x: blk(x, False)),
    "scalar-first": (lambda blk, x: blk(x),
                     lambda fc, scale, x: fc(x) * 1.01 * scale,
                     lambda blk, x: blk(1.0, x)),
}


@pytest.mark.parametrize("call", CALLS)
def test_the_block_with_the_bug_is_the_culprit_however_it_is_called(call):
    diagnosis = _diagnosis(*CALLS[call])
    culprit = diagnosis.trace.culprit
    assert culprit is not None and culprit.pair.torch == "blk", diagnosis.lines()
    assert culprit.judged == "natural"  # its inputs agree: its natural output is the verdict
    assert culprit.isolated_margin > 1000  # 1% of activations of ~3 against atol 1e-5
    assert not diagnosis.weights and not diagnosis.settings


@pytest.mark.parametrize("call", CALLS)
def test_the_block_runs_alone_with_its_call_as_captured(call):
    """On torch's inputs, with the call's keyword arrays, flags and scalars kept."""
    diagnosis = _diagnosis(*CALLS[call], every_module_alone=True)
    block = next(v for v in diagnosis.trace.modules if v.pair.torch == "blk")
    assert block.judged == "alone" and block.isolated_margin > 1000
    assert diagnosis.trace.culprit.pair.torch == "blk"


def test_an_array_only_the_flax_call_has_stays_its_own_when_run_alone():
    """The Flax block takes a second array torch's does not: run on torch's inputs, the one
    torch has is torch's, the other Flax's own (before: not run alone at all)."""
    two_arrays = (lambda blk, x: blk(x), lambda fc, x, y: fc(x) * 1.01 + 0 * y,
                  lambda blk, x: blk(x, x))
    diagnosis = _diagnosis(*two_arrays, every_module_alone=True)
    culprit = diagnosis.trace.culprit
    assert culprit.pair.torch == "blk" and culprit.judged == "alone"
    assert culprit.isolated_margin > 1000


def test_a_block_that_cannot_run_alone_is_judged_on_its_natural_output(monkeypatch):
    """Its run on torch's inputs fails (here: made to); its inputs agree."""
    from pytest_parity.diagnose import trace

    def cannot(*_):
        raise TypeError("needs what the capture had")

    monkeypatch.setattr(trace, "run_flax_module", cannot)
    diagnosis = _diagnosis(*CALLS["array-keyword"], every_module_alone=True)
    assert diagnosis.trace.culprit.judged == "natural"
    assert diagnosis.trace.culprit.pair.torch == "blk"
    assert diagnosis.trace.culprit.input_margin <= 1.0


def test_no_search_and_no_culprit_when_the_outputs_agree():
    same = (lambda blk, x: blk(x), lambda fc, x: fc(x), lambda blk, x: blk(x))
    diagnosis = _diagnosis(*same)
    assert diagnosis.trace.culprit is None and not diagnosis.found
    assert all(v.judged in (None, "alone") for v in diagnosis.trace.modules)
    assert [v.judged for v in diagnosis.trace.modules if v.pair.torch] == [None] * 3


def test_a_small_failure_one_module_makes_is_found_by_giving_torchs_arrays():
    """1.000008x in the block: the model fails (by less than 4x), no module is 4x beyond on
    its own; with torch's outputs of the block in its place the model agrees, with torch's
    inputs it does not: the block is named, with those runs' margins."""
    slight = (lambda blk, x: blk(x), lambda fc, x: fc(x) * 1.000008, lambda blk, x: blk(x))
    diagnosis = _diagnosis(*slight)
    root = diagnosis.trace.modules[0]
    assert 1.0 < root.output_margin < 4.0, root
    assert diagnosis.trace.culprit.pair.torch == "blk"
    given = dict(diagnosis.trace.patched)
    assert given["blk outputs"] <= 1.0 < given["blk inputs"]
    assert "the model's output agrees once the Flax side is given torch's" in \
        "\n".join(diagnosis.lines())


def test_a_small_failure_two_modules_share_has_no_culprit():
    """1.000006x before the block and 1.000006x in it: each makes about half of the model's
    margin, neither most of it: rounding-like error spread over modules names no culprit."""
    spread = (lambda blk, x: blk(x), lambda fc, x: fc(x) * 1.000006,
              lambda blk, x: blk(x * 1.000006))
    diagnosis = _diagnosis(*spread)
    root = diagnosis.trace.modules[0]
    assert 1.0 < root.output_margin < 4.0, root
    assert diagnosis.trace.culprit is None, diagnosis.lines()
    assert "rounding accumulated over many modules" in "\n".join(diagnosis.lines())


def test_a_failing_diagnosis_adds_a_line_and_keeps_the_failure():
    from pytest_parity.compare import compare, records
    from pytest_parity.diagnose import mode
    from pytest_parity.run.diagnosed import concluded

    comparison = compare(np.ones(3), np.zeros(3), name="logits")

    def broken():
        raise RuntimeError("a capture that went wrong")

    with mode.applied("on-failure"), records.collecting() as found, \
            pytest.raises(AssertionError) as failure:
        concluded(comparison, broken)
    text = str(failure.value)
    assert text.startswith("[parity] logits: values are not sufficiently close")
    assert "[parity] no diagnosis: it failed with RuntimeError: a capture that went wrong" in text
    assert found[0]["diagnosis_error"] == "RuntimeError: a capture that went wrong"


def test_batch_statistics_chosen_at_call_time_are_audited():
    """`bn(x, use_running_average=False)`: batch statistics, against torch's eval BatchNorm."""
    from pytest_parity.diagnose.capture import SLOT, CallTemplate, FlaxCapture
    from pytest_parity.diagnose.diagnosis import _as_called
    from pytest_parity.diagnose.settings import audit_settings

    model = torch.nn.Sequential(torch.nn.BatchNorm1d(16)).eval()
    capture = FlaxCapture(modules={"bn": nn.BatchNorm(momentum=0.9, epsilon=1e-5)},
                          templates={"bn": CallTemplate((SLOT,), {"use_running_average": False})})
    assert audit_settings(model, capture.modules, [("0", "bn")]) == []  # the field says nothing
    findings = audit_settings(model, _as_called(capture), [("0", "bn")])
    assert [(f.where, f.what) for f in findings] == [("torch 0 <-> flax bn", "batch statistics")]


def test_arrays_are_paired_by_parameter_name_across_keyword_and_positional_calls():
    """torch calls the block `blk(x, shift=s)`, the Flax side `blk(s, x)` to a `(shift, x)`
    signature: paired by position, x met s (inputs max abs ~10, the block run alone on
    swapped arrays); by name, the inputs agree and the block is blamed on its own."""

    class Block(nn.Module):
        @nn.compact
        def __call__(self, shift, x):
            return nn.Dense(16, name="fc")(x) * 1.01 + shift

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            stem = nn.Dense(16, name="stem")(x)
            return Block(name="blk")(stem * 0.5, stem)

    diagnosis = _traced(lambda: TorchNet(lambda blk, x: blk(x, shift=x * 0.5)).eval(), Net(),
                        every_module_alone=True)
    block = next(v for v in diagnosis.trace.modules if v.pair.torch == "blk")
    assert block.input_margin <= 1.0, block
    assert diagnosis.trace.culprit is block and block.judged == "alone"
    assert block.isolated_margin > 1000


class TorchNormed(torch.nn.Module):
    """The two-layer net with a LayerNorm after it, its activations small (weights / 100)."""

    def __init__(self):
        super().__init__()
        self.stem, self.blk = torch.nn.Linear(16, 16), TorchBlock()
        self.norm = torch.nn.LayerNorm(16)
        with torch.no_grad():
            for linear in (self.stem, self.blk.fc):
                linear.weight.mul_(0.01)
                linear.bias.mul_(0.01)

    def forward(self, x):
        return self.norm(self.blk(self.stem(x)))


def test_a_normalizer_that_scales_up_a_blocks_small_error_is_not_blamed():
    """A 0.2% error in the block's own code stays within atol at its output (values ~1e-3);
    the LayerNorm after it scales it up past the tolerance. Before: the LayerNorm, its inputs
    within tolerance, was blamed on its natural output; on torch's inputs it agrees, and
    with torch's outputs of the block the model does: the block is the culprit."""

    from pytest_parity.mapping.layer_rules import norm_rules

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(16, name="fc")(x) * 1.002

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            hidden = Block(name="blk")(nn.Dense(16, name="stem")(x))
            return nn.LayerNorm(epsilon=1e-5, name="norm")(hidden)

    mapping = Mapping("normed", (*linear_rules("stem", "stem"),
                                 *linear_rules("blk.fc", "blk/fc"), *norm_rules("norm", "norm")))
    diagnosis = _traced(lambda: TorchNormed().eval(), Net(), mapping)
    by_name = {v.pair.torch: v for v in diagnosis.trace.modules}
    assert by_name["blk"].output_margin <= 1.0 < by_name["norm"].output_margin, by_name
    assert diagnosis.trace.culprit.pair.torch == "blk", diagnosis.lines()


def test_a_flax_side_computing_batch_statistics_and_drawing_dropout_is_traced():
    """A Flax call that updates BatchNorm's statistics (train mode, as torch's) and draws
    dropout needs its collections mutable and a dropout key: before, the diagnosis failed
    with ModifyScopeVariableError. Its bug (* 1.01 after the norm) is found in its module."""

    from pytest_parity.mapping.layer_rules import batch_norm_rules

    class TorchNormNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.bn, self.blk = torch.nn.Linear(16, 16), torch.nn.BatchNorm1d(16), \
                TorchBlock()

        def forward(self, x):
            return self.blk(self.bn(self.stem(x)))

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dropout(0.5, deterministic=False)(x) * 0.0 + x  # draws a key, changes nothing
            return nn.Dense(16, name="fc")(x) * 1.01

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5,
                             name="bn")(nn.Dense(16, name="stem")(x))
            return Block(name="blk")(x)

    mapping = Mapping("bn", (*linear_rules("stem", "stem"), *batch_norm_rules("bn", "bn"),
                             *linear_rules("blk.fc", "blk/fc")))
    diagnosis = _traced(lambda: TorchNormNet().train(), Net(), mapping)
    by_name = {v.pair.torch: v for v in diagnosis.trace.modules}
    assert by_name["bn"].output_margin <= 1.0  # batch statistics on both sides
    assert diagnosis.trace.culprit.pair.torch == "blk", diagnosis.lines()


@pytest.mark.parametrize("off_by", [0.0175, 2.12])
def test_an_input_pipeline_culprit_gives_both_differences(off_by):
    """A correct preprocessing (off by rounding-sized 0.0175) and a broken one (2.12) got the
    same line; now each says how far the inputs and the outputs are apart."""

    same = CALLS["array-keyword"]
    diagnosis = _traced(lambda: TorchNet(same[0]).eval(),
                        flax_net(lambda fc, x, *, shift: fc(x) + shift, same[2]),
                        flax_inputs=INPUTS + off_by, inputs_differ=True)
    line = next(line for line in diagnosis.lines() if "the inputs themselves" in line)
    assert f"inputs max abs {off_by:.2e}" in line, line
    assert "outputs max abs" in line and line.count("margin") == 2


class NewGELUActivation(torch.nn.Module):
    """transformers' GPT-2 activation (the tanh form), known to the audit by its class name."""

    def forward(self, x):
        return torch.nn.functional.gelu(x, approximate="tanh")


def test_a_transformers_gelu_against_the_other_approximation_is_named():
    """GPT-2's `NewGELUActivation` computes the tanh form; a Flax block computing the exact
    one (erf in its jaxpr) gets the settings finding (before: only torch's nn.GELU was read)."""

    class TorchMlp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act, self.out = torch.nn.Linear(16, 16), NewGELUActivation(), \
                torch.nn.Linear(16, 16)

        def forward(self, x):
            return self.out(self.act(self.fc(x)))

    class Mlp(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(16, name="out")(nn.gelu(nn.Dense(16, name="fc")(x),
                                                    approximate=False))

    mapping = Mapping("mlp", (*linear_rules("fc", "fc"), *linear_rules("out", "out")))
    diagnosis = _traced(lambda: TorchMlp().eval(), Mlp(), mapping)
    assert diagnosis.trace.culprit.pair.torch == "", diagnosis.lines()
    assert [(f.what, f.torch, f.flax) for f in diagnosis.settings] == \
        [("GELU approximate (act)", "'tanh'", "'none'")], diagnosis.settings


def test_arrays_one_side_keeps_at_batch_one_are_compared_broadcast():
    """transformers' torch BERT hands its position embedding a (1, S) buffer of position ids,
    the Flax side (B, S): the trace showed inputs and outputs max abs inf there. Broadcast,
    they agree; shapes that do not broadcast stay apart."""
    from pytest_parity.diagnose.distance import errors_between

    ids = np.arange(8)[None]
    assert errors_between([np.repeat(ids, 3, 0)], [ids], None, {}).margin == 0.0
    assert errors_between([ids], [np.repeat(ids, 3, 0)], None, {}).margin == 0.0
    assert errors_between([np.repeat(ids, 3, 0) + 1], [ids], None, {}).margin > 1
    assert errors_between([np.zeros((3, 7))], [ids], None, {}).margin == float("inf")


def test_arguments_pair_by_name_and_the_rest_in_order():
    """torch's `forward(x, mask)` and Flax's `__call__(inputs, mask)` share only `mask`:
    before, `x` and `inputs` were never compared (paired by name alone)."""
    from pytest_parity.diagnose.arguments import paired_inputs
    from pytest_parity.diagnose.capture import Captured

    flax = Captured([np.zeros(2), np.ones(2)], [], ["inputs", "mask"])
    torch_call = Captured([np.zeros(2), np.ones(2)], [], ["x", "mask"])
    assert paired_inputs(flax, torch_call) == [(0, 0), (1, 1)]
    swapped = Captured([np.ones(2), np.zeros(2)], [], ["mask", "inputs"])
    assert paired_inputs(swapped, torch_call) == [(0, 1), (1, 0)]


def test_the_first_child_whose_outputs_fix_the_model_is_found_past_a_skip_connection():
    """A later child that adds an earlier one's output back in (transformers' BertOutput)
    does not fix what the earlier started: each child is tried in turn, not bisected."""
    from pytest_parity.diagnose import patching

    class Runs:
        def margin(self, child, where):
            return {"attention": 0.1, "intermediate": 3.0, "output": 0.2}[child]

    assert patching._first_fixing(["attention", "intermediate", "output"], Runs()) == 0
