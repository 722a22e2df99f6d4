"""One comparison's record, as the report keeps it: built where the comparison is made
(pytest_parity.compare), placed in its case by the plugin (device, dtype, test), read by the
table (report.py), the pictures (report_picture.py, diagnose/picture.py) and written as JSON
(docs/report-schema.md has its fields).

The record reads as the JSON's mapping too (`record["margin"]`), so code that read the plain
dicts it replaces keeps working. It crosses from xdist workers as that plain dict (`to_dict`,
then `from_dict`): xdist sends only plain data.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class ParityRecord(Mapping[str, Any]):
    """The worst leaf's figures, with counts over every leaf. The defaults are a comparison
    that never reached the values: a failure whose figures are unbounded."""

    name: str = ""
    leaves: int = 0
    failing_leaves: list[str] = field(default_factory=list)
    worst_leaf: str = ""
    shape: list[int] = field(default_factory=list)
    actual_dtype: str = ""
    expected_dtype: str = ""
    max_abs: float = math.inf
    max_rel: float = math.inf
    worst_index: list[int] = field(default_factory=list)
    max_abs_index: list[int] | None = None  # absent from a record that reached no values
    rtol: float = 0.0
    atol: float = 0.0
    tolerance_from: str = "-"
    n_failing: int = 0
    size: int = 0
    n_masked: int = 0
    n_valid: int = 0
    n_masked_positions: int = 0
    margin: float = math.inf
    passed: bool = False
    budget: dict[str, Any] | None = None
    # What some records carry besides, in the order it was added: "problem", "kind",
    # "examples", "losses", "branches", "torch_only", "diagnosis", "diagnosis_error", ...
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Placed by the plugin: the case's device and dtype (None where it has none), its test.
    device: str | None = None
    dtype: str | None = None
    test: str | None = None

    @property
    def kind(self) -> str:
        """'outputs', 'gradients', 'steps' or 'loss_down'."""
        return str(self.extra.get("kind", "outputs"))

    @property
    def diagnosis(self) -> dict[str, Any] | None:
        """The trace's record, where `--parity-trace` diagnosed this comparison."""
        return self.extra.get("diagnosis")

    @property
    def problem(self) -> str | None:
        """Why the values were never compared (structures, shapes, dtypes differ)."""
        return self.extra.get("problem")

    def with_fields(self, **changes: Any) -> ParityRecord:
        """This record with these fields changed; a name it has no field for goes (or stays,
        in its place) among its extra ones."""
        own = {name: value for name, value in changes.items() if name in _FIELDS}
        added = {name: value for name, value in changes.items() if name not in _FIELDS}
        return replace(self, **own, extra={**self.extra, **added}) if added \
            else replace(self, **own)

    def without(self, *names: str) -> ParityRecord:
        """This record without these extra fields."""
        return replace(self, extra={k: v for k, v in self.extra.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        """The record as the JSON report writes it (and as xdist carries it)."""
        found = {name: getattr(self, name) for name in _CORE}
        if self.max_abs_index is None:
            del found["max_abs_index"]
        return {**found, **self.extra, "device": self.device, "dtype": self.dtype,
                "test": self.test}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ParityRecord:
        """A record from its dict (a worker's, or an older caller's)."""
        if isinstance(record, ParityRecord):
            return record
        return cls(**{name: value for name, value in record.items() if name in _FIELDS},
                   extra={name: value for name, value in record.items()
                          if name not in _FIELDS})

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


_FIELDS = {item.name for item in fields(ParityRecord)} - {"extra"}
_CORE = [item.name for item in fields(ParityRecord)
         if item.name not in {"extra", "device", "dtype", "test"}]
