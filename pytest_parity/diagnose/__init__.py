"""Where a port goes wrong: weight and settings audits, and the per-module activation trace
that finds the first divergent module.

    modules.py    which torch module is which Flax module (they hold the same weights)
    weights.py    the weight audit: every Flax variable against the torch tensor, mapped
    settings.py   the settings audit: eps, momentum, strides, padding, groups... of each pair
    settings_checks.py  how each setting is compared (padding, momentum conventions...)
    own_code.py   the culprit's own code: GELU and max pooling read from the Flax jaxpr
    capture.py    both sides run once with every aligned module's inputs and outputs kept
    trace.py      each module judged on torch's inputs; the first divergent module
    distance.py   how far the two sides' captured arrays are apart, under the tolerance policy
    diagnosis.py  the three together, as the failure text's section and the report's record
    findings.py   what an audit finds
    mode.py       when to diagnose (`--parity-trace`)
    picture.py    a trace drawn as a PNG beside the JSON report
"""

from pytest_parity.diagnose.arguments import argument_names, torch_inputs_in_flax_call
from pytest_parity.diagnose.diagnosis import Diagnosis, diagnose
from pytest_parity.diagnose.distance import in_layout
from pytest_parity.diagnose.findings import Finding
from pytest_parity.diagnose.modules import ModulePair, aligned_modules
from pytest_parity.diagnose.picture import draw_trace, picture_path
from pytest_parity.diagnose.trace import ModuleVerdict, Trace
from pytest_parity.diagnose.weights import audit_weights, converter_finding

__all__ = [
    "Diagnosis",
    "Finding",
    "ModulePair",
    "ModuleVerdict",
    "Trace",
    "aligned_modules",
    "argument_names",
    "audit_weights",
    "converter_finding",
    "diagnose",
    "draw_trace",
    "in_layout",
    "picture_path",
    "torch_inputs_in_flax_call",
]
