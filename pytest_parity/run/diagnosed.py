"""A comparison of both sides that, when it fails (or always, per `--parity-trace`), is
diagnosed: the audits and the trace of the same input, in the failure text and the record."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pytest_parity.compare import Comparison, ParityRecord, format_failure, records
from pytest_parity.diagnose import Diagnosis, diagnose, mode
from pytest_parity.errors import PREFIX
from pytest_parity.layouts import Layout
from pytest_parity.mapping import Mapping
from pytest_parity.run.sides import flax_input, torch_input


def diagnosis_of(*, mapping: Mapping | None, torch_model: Any, flax_module: Any,
                 flax_variables: Any, inputs: Any, flax_inputs: Any, layout: Layout,
                 device: str, dtype: str, tolerance: dict[str, Any],
                 inputs_differ: bool = False, descend: bool | None = None,
                 every_module_alone: bool = False, training: bool = False) -> Diagnosis:
    """Diagnose one input (`inputs` in torch's layout, `flax_inputs` in Flax's)."""
    return diagnose(mapping=mapping, torch_model=torch_model, flax_module=flax_module,
                    flax_variables=flax_variables,
                    torch_inputs=torch_input(inputs, device, dtype),
                    flax_inputs=flax_input(flax_inputs, device, dtype),
                    image_rank=np.ndim(inputs) if layout is Layout.IMAGE else None,
                    tolerance=tolerance, inputs_differ=inputs_differ, descend=descend,
                    every_module_alone=every_module_alone, training=training)


def recorded(comparison: Comparison, diagnosis: Callable[[], Diagnosis | None],
             record: ParityRecord | None = None) -> list[str]:
    """Emit the comparison's record, with the diagnosis where `--parity-trace` wants one; the
    diagnosis' lines for the failure text. A diagnosis that fails says so in one line: it
    never hides the failure it was to explain."""
    record = record or comparison.to_record()
    lines: list[str] = []
    if mode.wanted(comparison.passed):
        try:
            found = diagnosis()
        except Exception as error:
            record = record.with_fields(diagnosis_error=f"{type(error).__name__}: {error}")
            lines = [f"{PREFIX} no diagnosis: it failed with {record['diagnosis_error']}"]
        else:
            if found is not None:
                record = record.with_fields(diagnosis=found.to_record())
                lines = found.lines()
    records.emit(record)
    return lines


def concluded(comparison: Comparison, diagnosis: Callable[[], Diagnosis | None],
              record: ParityRecord | None = None) -> Comparison:
    """Record the comparison (diagnosed where wanted); raise its failure text, the diagnosis
    appended, when it failed."""
    __tracebackhide__ = True
    lines = recorded(comparison, diagnosis, record)
    if not comparison.passed:
        raise AssertionError("\n".join([format_failure(comparison), *lines]))
    return comparison
