"""The weight audit: every Flax variable against the torch tensor carried through the mapping.

Both sides hold the same weights after a conversion, bit for bit (in the case's dtype, both
cast from the same values). A key that differs is a conversion bug at that key: a kernel not
transposed, q/k/v in the wrong order, a scale and a variance swapped, a lossy cast. The audit
says what the Flax value equals instead where it can tell.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingType
from typing import Any

import numpy as np

from pytest_parity.diagnose.findings import Finding
from pytest_parity.mapping import Mapping, MappingError, flatten


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and \
        np.array_equal(np.ascontiguousarray(a).view(np.uint8),
                       np.ascontiguousarray(b).view(np.uint8))


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("nan")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))


def _equals_instead(path: str, flax_value: np.ndarray, expected: MappingType[str, np.ndarray],
                    untransformed: np.ndarray | None) -> str:
    """What the Flax value is, where it is something recognisable."""
    if untransformed is not None and _same(flax_value, untransformed):
        return "equals the torch tensor without the transform"
    if untransformed is not None and untransformed.ndim == 2 and \
            _same(flax_value, np.ascontiguousarray(untransformed.T)):
        return "equals the torch tensor transposed"
    if flax_value.size > 1 and np.all(flax_value == flax_value.flat[0]):
        # A constant (a bias left at its zeros) equals every other constant of its shape:
        # naming one (MiniLM's zero pooler bias) would point at an unrelated key.
        return f"every value is {flax_value.flat[0]:.6g}"
    others = [other for other, value in expected.items()
              if other != path and value.shape == flax_value.shape and _same(flax_value, value)]
    if others:
        return f"equals torch's value for {', '.join(others[:3])}"
    return ""


def audit_weights(mapping: Mapping, torch_state: MappingType[str, Any],
                  flax_variables: MappingType[str, Any]) -> list[Finding]:
    """Every canonical tensor whose Flax value is not the torch value carried through the
    mapping (both as numpy, in the case's dtype)."""
    state = {key: np.asarray(value) for key, value in torch_state.items()}
    try:
        expected, _ = mapping.torch_to_canonical(state)
        actual, _ = mapping.flax_to_canonical(
            {path: np.asarray(value) for path, value in flatten(flax_variables).items()})
    except MappingError as error:
        return [Finding("weights", mapping.architecture, "keys", "-", "-", str(error))]
    flax_paths = {path for path, rule in ((p, mapping.rule_for(p)) for p in expected)
                  if rule is not None and rule.collection is not None}
    findings = [Finding("weights", path, "missing", "present", "absent")
                for path in sorted(flax_paths - actual.keys())]
    sources, untransformed = {}, {}
    for key, (paths, _, _, transform, split) in mapping.correspondence(state).items():
        for number, path in enumerate(paths, 1):  # a fused tensor's pieces by its own key
            piece = f"piece {number} of {len(paths)}, " if split else ""
            sources[path] = f"torch {key}, {piece}{transform}"
        if split is None and len(paths) == 1:
            untransformed[paths[0]] = state[key]
    for path in sorted(flax_paths & actual.keys()):
        want, got = expected[path], actual[path]
        if _same(got, want):
            continue
        raw = untransformed.get(path)
        hint = _equals_instead(path, got, expected, raw)
        figures = (f"shape {got.shape} vs {want.shape}" if got.shape != want.shape
                   else f"max abs {_max_abs(got, want):.3g}")
        note = "; ".join(part for part in (figures, sources.get(path, ""), hint) if part)
        findings.append(Finding("weights", path, "value", str(want.dtype), str(got.dtype), note))
    return findings


def converter_finding(findings: list[Finding], mapping: Mapping) -> Finding:
    """The line that heads the weight audit of a pair whose Flax variables the user converted
    (pair_of(..., variables=)): they are not what the mapping carries from torch's weights, so
    the failure may be their converter's, not the port's."""
    differing = [finding for finding in findings if finding.audit == "weights"]
    return Finding("weights", "the given variables", "source", "weights carried by the "
                   f"mapping {mapping.architecture}", "the user's own conversion",
                   f"{len(differing)} tensor{'s' if len(differing) != 1 else ''} differ from the "
                   "mapping's conversion of torch's weights: the converter that made them is at "
                   "fault, not necessarily the port; pair_of(...) without variables= checks the "
                   "port on the mapping's weights")
