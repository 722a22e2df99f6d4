"""Where a port goes wrong: realistic porting bugs injected into the zoo's Flax side are each
found at their module by the trace, and named by the audit that can see them; a correct port
is never blamed.

Each bug must change the output (the comparison fails) before its diagnosis counts. These
comparisons are meant to fail, so they are collected here and kept out of the parity report.
"""

import dataclasses

import numpy as np
import pytest

from pytest_parity.compare import records
from pytest_parity.diagnose import mode
from tests.support.port_bugs import BUGS, PortBug

# ResNet-18 and ViT-Ti/16 with 12 injected bugs, each
# traced layer by layer: 33 s, the whole zoo's; the main job's mutations are in
# test_mutations_detected.py
pytestmark = pytest.mark.zoo_all


def _with_bug(loaded, bug: PortBug, monkeypatch):
    import jax

    from pytest_parity.run.sides import flax_module_in, placed_variables

    if bug.code is not None:
        module = bug.code(monkeypatch, flax_module_in(loaded.pair.flax_model(), loaded.dtype))
        loaded = dataclasses.replace(loaded, flax_model=module, flax_apply=jax.jit(module.apply))
    if bug.variables is not None:
        variables = jax.tree_util.tree_map(np.array, loaded.flax_variables)  # copies
        bug.variables(variables)
        loaded = dataclasses.replace(loaded, flax_variables=placed_variables(
            variables, loaded.device, loaded.dtype))
    return loaded


def diagnosed_failure(loaded, images, bug: PortBug) -> dict:
    """The diagnosis of the failing comparison of the pair with the bug injected."""
    flax_inputs = bug.flax_inputs(images) if bug.flax_inputs else None
    with mode.applied("on-failure"), records.collecting() as found, \
            pytest.raises(AssertionError) as failure:
        loaded.assert_close(images, flax_inputs=flax_inputs, name="with the bug")
    assert "where it goes wrong" in str(failure.value)
    assert not found[-1]["passed"]  # the injection changed the output
    return found[-1]["diagnosis"]


# The bugs bfloat16's comparison detects (the other four change the output by less than
# bfloat16's own rounding: the tanh GELU, a LayerNorm's and a BatchNorm's epsilon, the
# classifier's weights through bfloat16).
IN_BFLOAT16 = [name for name in BUGS if name not in (
    "vit-tanh-gelu-in-one-mlp", "vit-layer-norm-epsilon-1e-5-in-one-block",
    "resnet-batch-norm-epsilon-1e-3", "resnet-classifier-weights-through-bfloat16")]


@pytest.mark.parity(dtypes=["float32"])
@pytest.mark.parametrize("bug", BUGS)
def test_a_porting_bug_is_found_where_it_is(parity_pair, random_images, monkeypatch, bug):
    _assert_localized(parity_pair, random_images, monkeypatch, BUGS[bug])


@pytest.mark.parity(dtypes=["bfloat16"])
@pytest.mark.parametrize("bug", IN_BFLOAT16)
def test_a_porting_bug_is_found_where_it_is_in_bfloat16(parity_pair, random_images, monkeypatch,
                                                        bug):
    """Traced in float32 on bfloat16's rounded weights and inputs, where one module's error
    is not lost in each module's rounding."""
    _assert_localized(parity_pair, random_images, monkeypatch, BUGS[bug])


def _assert_localized(parity_pair, random_images, monkeypatch, spec: PortBug) -> None:
    loaded = parity_pair(spec.model)
    dtype = loaded.dtype
    diagnosis = diagnosed_failure(_with_bug(loaded, spec, monkeypatch), random_images, spec)
    if spec.culprit == "(inputs)":
        assert diagnosis["inputs_differ"] and diagnosis["culprit"] is None
    else:
        assert diagnosis["culprit"] is not None, diagnosis["modules"][:3]
        assert diagnosis["culprit"]["torch"] == spec.culprit
    if spec.own_code:
        assert any(entry.startswith(spec.own_code) for entry in diagnosis["own_code"])
    if spec.between:
        assert tuple(diagnosis["between"]) == spec.between, diagnosis["between"]
    findings = diagnosis["weights"] + diagnosis["settings"]
    if spec.finding:
        audit, text = spec.finding
        assert any(f["audit"] == audit and text in f"{f['where']}: {f['what']}"
                   for f in findings), findings
    else:
        assert findings == []
    # weights named in the case's dtype, though a low-precision case is traced in float32
    assert all(f["flax"] == dtype for f in diagnosis["weights"] if f["what"] == "value"), \
        diagnosis["weights"]


@pytest.mark.parity(dtypes=["float32", "bfloat16"])
@pytest.mark.parametrize("name", ["resnet18", "vit_ti_16"])
def test_a_correct_port_is_never_blamed(parity_pair, random_images, name):
    """Every module run on torch's inputs stays far below the blame factor (measured for every
    zoo model: docs/diagnosis.md), and even told to search, nothing is blamed or found."""
    from pytest_parity.diagnose.trace import BLAME

    diagnosis = parity_pair(name).diagnose(random_images, descend=True, every_module_alone=True)
    assert not diagnosis.found, diagnosis.lines()
    alone = [v.isolated_margin for v in diagnosis.trace.modules if v.judged == "alone"]
    assert len(alone) > 50 and len(alone) >= len(diagnosis.trace.modules) - 25
    assert max(alone) < BLAME / 2, max(alone)  # measured <= 1.08 over the zoo
