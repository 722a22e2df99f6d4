"""The default tolerance per dtype: one table, used unless a caller gives rtol/atol.

torch.testing and JAX's test utilities disagree; the choices below are for comparing *two
frameworks* against each other, where summation order and fused kernels differ.

    dtype     torch.testing   jax test_util   chosen (rtol, atol)
    float64   1e-7, 1e-7      1e-15, 1e-15    1e-7, 1e-7
    float32   1.3e-6, 1e-5    1e-6, 1e-6      1.3e-6, 1e-5
    float16   1e-3, 1e-5      1e-3, 1e-3      1e-3, 1e-3
    bfloat16  1.6e-2, 1e-5    1e-2, 1e-2      1.6e-2, 1e-2

- float64: jax's is for one backend against itself; two frameworks need torch's.
- float32: torch's. A sum of k float32 terms carries ~k * 6e-8 relative error, so an absolute
  1e-6 fails correct ports of layers with wide reductions near zero-mean outputs.
- float16/bfloat16: jax's atol. Their spacing near 1 is 9.8e-4 and 7.8e-3; an absolute 1e-5
  holds only for outputs near zero, and values one rounding step apart must pass.

The policy, each layer overriding the one before for whichever of rtol/atol it gives:
    1. default  the table above, for the least precise dtype of the two arrays
    1b. budget  for a bfloat16/float16 case (float32 on request) where both sides also ran in
                their reference precision: atol from torch's own rounding, rtol 0, and a
                bound on the cross error's rms (pytest_parity.compare.budget)
    2. pair     rtol/atol passed to assert_close (a pair's measured tolerance, e.g.
                `registry.get(name).tolerance(dtype)`)
    3. marker   `@pytest.mark.parity(rtol=..., atol=...)`: a number, or {dtype: number}
    4. command line  `--parity-rtol` / `--parity-atol` (or the parity_rtol / parity_atol ini)
The report names the layer that set each comparison's tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_parity.case_context import Layer as Layer  # the policy's layers, named there


@dataclass(frozen=True)
class Tolerance:
    """An element passes when |actual - expected| <= atol + rtol * |expected|."""

    rtol: float
    atol: float

    def __post_init__(self) -> None:
        if self.rtol < 0 or self.atol < 0:
            raise ValueError(f"tolerances must be >= 0, got rtol={self.rtol}, atol={self.atol}")


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-7, atol=1e-7),
    "float32": Tolerance(rtol=1.3e-6, atol=1e-5),
    "float16": Tolerance(rtol=1e-3, atol=1e-3),
    "bfloat16": Tolerance(rtol=1.6e-2, atol=1e-2),
}

# Integers and booleans must match exactly.
EXACT = Tolerance(rtol=0.0, atol=0.0)

# When two dtypes meet, the less precise one sets the tolerance.
_PRECISION_ORDER = ["bfloat16", "float16", "float32", "float64"]


def least_precise(*dtype_names: str) -> str:
    """The least precise floating dtype of these ('' where none is floating)."""
    floating = [name for name in dtype_names if name in DEFAULT_TOLERANCES]
    return min(floating, key=_PRECISION_ORDER.index) if floating else ""


def default_tolerance(*dtype_names: str) -> Tolerance:
    """The default tolerance for comparing arrays of these dtypes (the least precise wins)."""
    dtype = least_precise(*dtype_names)
    return DEFAULT_TOLERANCES[dtype] if dtype else EXACT




def _for_dtype(value: float | Mapping[str, float] | None, dtype: str) -> float | None:
    return value.get(dtype) if isinstance(value, Mapping) else value


def resolve_layers(dtype_names: Sequence[str], layers: Sequence[Layer]) -> tuple[Tolerance, str]:
    """The tolerance for arrays of these dtypes after the layers, in order, and the name of the
    last layer that set rtol or atol ("default" when none did)."""
    tolerance, source = default_tolerance(*dtype_names), "default"
    dtype = least_precise(*dtype_names)
    for name, rtol, atol in layers:
        rtol, atol = _for_dtype(rtol, dtype), _for_dtype(atol, dtype)
        if rtol is None and atol is None:
            continue
        tolerance = Tolerance(rtol=tolerance.rtol if rtol is None else float(rtol),
                              atol=tolerance.atol if atol is None else float(atol))
        source = name
    return tolerance, source
