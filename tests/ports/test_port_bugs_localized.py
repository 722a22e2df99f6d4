"""Issue 26's acceptance on ports this project did not write: realistic porting bugs injected
into the Flax side of transformers' FlaxBert (MiniLM-L6's weights), FlaxGPT2 and FlaxViT and
of flaxmodels' ResNet-50 (tests/ports/port_bugs.py) are each detected (the comparison fails)
and localized by the diagnosis (the culprit within the bug's module or its block, and the
audit finding where a setting or a weight is at fault), in float32 and bfloat16; correct pairs,
traced with the descent forced and every module run alone, are never blamed.

A case not localized yet is an xfail (strict) with the measured reason, so it flips when the
diagnosis improves; a dtype whose rounding hides a bug is skipped with the measured margin.
`python tests/ports/measure_port_bugs.py` prints the table these marks come from.
"""

import pytest

from tests.ports.port_bugs import BUGS, DTYPES, PORTS, REQUIRES, forward_findings, measured
from tests.support.requirements import require


@pytest.fixture(scope="module")
def ports():
    """Each pair built once per dtype for the module (the bugs are injected into copies)."""
    built = {}

    def port(name, dtype):
        for module in REQUIRES[name]:
            require(module, f"{module} is not installed: pip install -e '.[ports]'")
        if (name, dtype) not in built:
            built[name, dtype] = PORTS[name](dtype)
        return built[name, dtype]

    return port


def _cases():
    for bug in BUGS.values():
        for dtype in DTYPES:
            marks = []
            if dtype in bug.invisible:
                marks.append(pytest.mark.skip(reason=f"not detectable in {dtype}: "
                                                     f"{bug.invisible[dtype]}"))
            elif dtype in bug.known:
                marks.append(pytest.mark.xfail(strict=True,
                                               reason=f"issue 26: {bug.known[dtype]}"))
            yield pytest.param(bug.name, dtype, marks=marks, id=f"{bug.name}-{dtype}")


@pytest.mark.parametrize(("name", "dtype"), list(_cases()))
def test_a_port_bug_is_detected_and_localized(ports, name, dtype):
    bug = BUGS[name]
    found = measured(bug, ports(bug.pair, dtype), dtype)
    report = "\n".join(found.lines)
    assert found.detected, f"the injection did not change the output (margin {found.margin:.3g})"
    assert found.culprit_right, f"culprit {found.culprit!r}, expected within {bug.culprits}\n" \
                                f"{report}"
    assert found.finding_right, f"no {bug.finding} among the findings\n{report}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(PORTS))
def test_a_correct_port_is_never_blamed(ports, name, dtype):
    """Told to search and to run every module alone, the diagnosis blames nothing and finds no
    difference that changes the forward pass (training-only settings may be listed)."""
    port = ports(name, dtype)
    diagnosis = port.loaded.diagnose(port.inputs, descend=True, every_module_alone=True)
    report = "\n".join(diagnosis.lines())
    assert diagnosis.trace.culprit is None and not diagnosis.trace.inputs_differ, report
    assert diagnosis.weights == [], report
    assert forward_findings(diagnosis) == [], report
