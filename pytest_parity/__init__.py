"""pytest-parity: numerical parity tests between PyTorch models and their JAX/Flax ports.

The public names are imported on first use, so that loading the pytest plugin (which
imports this package) stays light: no numpy, torch or jax until a test needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_parity.compare import (
        DEFAULT_TOLERANCES,
        Comparison,
        ParityResult,
        Tolerance,
        assert_close,
        assert_trees_close,
    )
    from pytest_parity.inputs import Input
    from pytest_parity.mapping import (
        Chain,
        Flip,
        Identity,
        Mapping,
        MappingError,
        ParityMappingWarning,
        Reshape,
        Rule,
        Split,
        Transpose,
        automatic_mapping,
        load_mapping,
        save_mapping,
    )
    from pytest_parity.run import ParityTestResult, pair_of, parity_test

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TOLERANCES",
    "Chain",
    "Comparison",
    "Flip",
    "Identity",
    "Input",
    "Mapping",
    "MappingError",
    "ParityMappingWarning",
    "ParityResult",
    "ParityTestResult",
    "Reshape",
    "Rule",
    "Split",
    "Tolerance",
    "Transpose",
    "assert_close",
    "assert_trees_close",
    "automatic_mapping",
    "load_mapping",
    "pair_of",
    "parity_test",
    "save_mapping",
]

# Each public name's wing: importing it is deferred to the name's first use.
_MODULE_OF = {
    "DEFAULT_TOLERANCES": "pytest_parity.compare",
    "Comparison": "pytest_parity.compare",
    "ParityResult": "pytest_parity.compare",
    "Tolerance": "pytest_parity.compare",
    "assert_close": "pytest_parity.compare",
    "assert_trees_close": "pytest_parity.compare",
    "Input": "pytest_parity.inputs",
    "automatic_mapping": "pytest_parity.mapping",
    "Chain": "pytest_parity.mapping",
    "Flip": "pytest_parity.mapping",
    "Identity": "pytest_parity.mapping",
    "Mapping": "pytest_parity.mapping",
    "MappingError": "pytest_parity.mapping",
    "ParityMappingWarning": "pytest_parity.mapping",
    "Reshape": "pytest_parity.mapping",
    "Rule": "pytest_parity.mapping",
    "Split": "pytest_parity.mapping",
    "Transpose": "pytest_parity.mapping",
    "load_mapping": "pytest_parity.mapping",
    "save_mapping": "pytest_parity.mapping",
    "pair_of": "pytest_parity.run.live",
    "parity_test": "pytest_parity.run",
    "ParityTestResult": "pytest_parity.run",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'pytest_parity' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)
