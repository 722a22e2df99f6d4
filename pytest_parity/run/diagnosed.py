"""A comparison of both sides that, when it fails (or always, per `--parity-trace`), is
diagnosed: the audits and the trace of the same input, in the failure text and the record."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pytest_parity.compare import Comparison, format_failure, records
from pytest_parity.diagnose import Diagnosis, diagnose, mode
from pytest_parity.layouts import Layout
from pytest_parity.mapping import Mapping
from pytest_parity.run.sides import flax_input, torch_input


def diagnosis_of(*, mapping: Mapping | None, torch_model: Any, flax_module: Any,
                 flax_variables: Any, inputs: Any, flax_inputs: Any, layout: Layout,
                 device: str, dtype: str, tolerance: dict[str, Any],
                 inputs_differ: bool = False, descend: bool | None = None) -> Diagnosis:
    """Diagnose one input (`inputs` in torch's layout, `flax_inputs` in Flax's)."""
    return diagnose(mapping=mapping, torch_model=torch_model, flax_module=flax_module,
                    flax_variables=flax_variables,
                    torch_inputs=torch_input(inputs, device, dtype),
                    flax_inputs=flax_input(flax_inputs, device, dtype),
                    image_rank=np.ndim(inputs) if layout is Layout.IMAGE else None,
                    tolerance=tolerance, inputs_differ=inputs_differ, descend=descend)


def recorded(comparison: Comparison, diagnosis: Callable[[], Diagnosis | None],
             record: dict[str, Any] | None = None) -> Diagnosis | None:
    """Emit the comparison's record, with the diagnosis where `--parity-trace` wants one."""
    found = diagnosis() if mode.wanted(comparison.passed) else None
    record = dict(record or comparison.to_record())
    if found is not None:
        record["diagnosis"] = found.to_record()
    records.emit(record)
    return found


def concluded(comparison: Comparison, diagnosis: Callable[[], Diagnosis | None],
              record: dict[str, Any] | None = None) -> Comparison:
    """Record the comparison (diagnosed where wanted); raise its failure text, the diagnosis
    appended, when it failed."""
    __tracebackhide__ = True
    found = recorded(comparison, diagnosis, record)
    if not comparison.passed:
        raise AssertionError("\n".join([format_failure(comparison),
                                        *(found.lines() if found is not None else [])]))
    return comparison
