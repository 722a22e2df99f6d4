"""Import torchvision on a CPU-only torch whose torchvision wheel is a CUDA build.

On such a pair (here: torch 2.13.0+cpu with torchvision 0.28.0), `import torchvision` fails
with "operator torchvision::nms does not exist": torchvision registers Python fallbacks for
its C++ ops, and the CPU torch has no schema for them. Its model code is pure Python, so
defining the two op schemas first lets it import. This is the only place that does it, and
only after the plain import has failed with exactly that error.
"""

from __future__ import annotations

import sys
from importlib.util import find_spec
from types import ModuleType

_MISSING_OP = "operator torchvision::nms does not exist"
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold, float scale, int zero_point) -> Tensor",
)
# The torch.library.Library must stay alive, or its definitions are removed again.
_schema_library = None


def _forget_partial_import() -> None:
    for name in [name for name in sys.modules if name.split(".")[0] == "torchvision"]:
        del sys.modules[name]


def _define_op_schemas() -> None:
    global _schema_library
    import torch

    _schema_library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _schema_library.define(schema)


def import_torchvision() -> ModuleType | None:
    """`import torchvision`, defining its op schemas first only if the plain import fails;
    None where torchvision is not installed (then nothing imports it, transformers neither)."""
    if find_spec("torchvision") is None:
        return None
    try:
        import torchvision
    except RuntimeError as error:
        if _MISSING_OP not in str(error) or _schema_library is not None:
            raise
        _forget_partial_import()
        _define_op_schemas()
        import torchvision
    return torchvision


def workaround_applied() -> bool:
    """Whether this process needed the op schemas to import torchvision."""
    return _schema_library is not None
