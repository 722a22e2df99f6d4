"""The settings of a culprit's own code: the weightless layers between its aligned children.

On the torch side they are modules (`GELU(approximate='none')`, `MaxPool2d(...)`); a Flax
port usually writes them as functions (`nn.gelu(x)`, `nn.max_pool(x, ...)`), which have no
fields to read. Their settings are read from the Flax module's jaxpr instead (traced
abstractly: nothing runs), minus its aligned children's: exact GELU computes `erf` (`erfc`
in jax 0.10), the tanh approximation `tanh`; max pooling is a `reduce_window_max` with its
window, strides and padding. torch's GELUs are its own and transformers' (by class name).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from pytest_parity.diagnose.capture import FlaxCapture, module_call, submodule_variables
from pytest_parity.diagnose.findings import Finding
from pytest_parity.diagnose.modules import ModulePair


def _equations(jaxpr: Any) -> Iterator[Any]:
    """Every equation of a jaxpr, inside called jaxprs (jit, custom_jvp) too."""
    for equation in jaxpr.eqns:
        yield equation
        for value in equation.params.values():
            inner = getattr(value, "jaxpr", value)
            if hasattr(inner, "eqns"):
                yield from _equations(inner)


def _pools(equations: list[Any]) -> Counter[tuple[Any, ...]]:
    """Each max pooling's (window, strides, padding) over the spatial axes (NHWC)."""
    return Counter((tuple(e.params["window_dimensions"][1:-1]),
                    tuple(e.params["window_strides"][1:-1]),
                    tuple(tuple(p) for p in e.params["padding"][1:-1]))
                   for e in equations if e.primitive.name == "reduce_window_max")


def _traced(capture: FlaxCapture, variables: Any, path: str) -> tuple[Counter[str], Counter[Any]]:
    """The primitives and max poolings of the captured Flax module at `path`."""
    import jax

    shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in capture.calls[path].inputs]
    jaxpr = jax.make_jaxpr(module_call(capture, path))(submodule_variables(variables, path),
                                                        shapes).jaxpr
    equations = list(_equations(jaxpr))
    return Counter(e.primitive.name for e in equations), _pools(equations)


def _torch_pool(module: Any) -> tuple[Any, ...]:
    def pair(value: Any) -> tuple[int, int]:
        return (value, value) if isinstance(value, int) else tuple(value)

    padding = pair(module.padding)
    return pair(module.kernel_size), pair(module.stride or module.kernel_size), (
        (padding[0], padding[0]), (padding[1], padding[1]))


# torch's GELU modules by class name, with the approximation each computes: torch's own, and
# transformers' (GPT-2's `NewGELUActivation` is the tanh form, BERT's `GELUActivation` exact).
_GELUS = {
    "GELU": lambda layer: layer.approximate,
    "NewGELUActivation": lambda layer: "tanh",
    "GELUTanh": lambda layer: "tanh",
    "PytorchGELUTanh": lambda layer: "tanh",
    "FastGELUActivation": lambda layer: "tanh",
    "GELUActivation": lambda layer: "none",
}


def audit_own_code(culprit: ModulePair, children: list[ModulePair], torch_model: Any,
                   torch_layers: list[str], capture: FlaxCapture, variables: Any
                   ) -> list[Finding]:
    """Compare the settings of the weightless torch layers run in the culprit's own code
    (`torch_layers`, full names) with what its Flax side computes outside its children."""
    layers = {name: torch_model.get_submodule(name) for name in torch_layers}
    kinds = {type(layer).__name__ for layer in layers.values()}
    if not kinds & {*_GELUS, "MaxPool2d"} or culprit.flax not in capture.modules:
        return []
    primitives, pools = _traced(capture, variables, culprit.flax)
    for child in children:
        if child.flax in capture.modules:
            child_primitives, child_pools = _traced(capture, variables, child.flax)
            primitives, pools = primitives - child_primitives, pools - child_pools
    where = culprit.label()
    findings = []
    gelus = {name: _GELUS[type(layer).__name__](layer) for name, layer in layers.items()
             if type(layer).__name__ in _GELUS}
    exact = primitives["erf"] + primitives["erfc"]  # jax's exact GELU: erfc (0.10), erf before
    flax_gelu = "'tanh'" if primitives["tanh"] and not exact else \
        "'none'" if exact and not primitives["tanh"] else None
    for name, approximate in gelus.items():
        if flax_gelu is not None and flax_gelu != repr(approximate):
            findings.append(Finding("settings", where, f"GELU approximate ({name})",
                                    repr(approximate), flax_gelu,
                                    f"read from the Flax jaxpr: {primitives['tanh']} tanh, "
                                    f"{exact} erf/erfc"))
    torch_pools = Counter(_torch_pool(layer) for layer in layers.values()
                          if type(layer).__name__ == "MaxPool2d")
    if torch_pools and pools and torch_pools != pools:
        findings.append(Finding("settings", where, "max pooling (window, strides, padding)",
                                str(sorted(torch_pools)), str(sorted(pools)),
                                "torch's MaxPool2d against the Flax jaxpr's reduce_window_max"))
    return findings
