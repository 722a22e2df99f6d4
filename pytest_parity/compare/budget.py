"""The error budget of a low-precision comparison: what each framework's own rounding does.

In bfloat16 or float16 a correct port and torch disagree by about as much as each of them
disagrees with itself computed in float32, and that depends on the model, its depth and the
input: no fixed tolerance is right for all of them. So both sides also run in a reference
precision (float32 for bfloat16/float16; float64 for a float32 budget) on the same weights
and inputs, both already rounded to the case's dtype: the budget then measures rounding in the
arithmetic alone, the one thing the cross-framework error is made of.

    torch drift   torch's low-precision output against torch's own reference output
    Flax drift    the same for the Flax side (reported; not part of the verdict)
    cross error   Flax's low-precision output against torch's (what is judged)

The cross error passes when both hold over the elements compared (the mask's):
    rms(cross) <= RMS_FACTOR * rms(torch drift)    (over RMS_MIN_ELEMENTS elements or more)
    |cross|    <= MAX_FACTOR * max |torch drift| + one rounding step of the dtype at |torch|
                  (every element: atol and rtol of the failure table)

Why torch's drift alone: a port that rounds more than the original (a softmax or LayerNorm
statistics in bfloat16 where torch computes them in float32, weights held in bfloat16 in a
float16 run) also drifts more from its own float32 run; a budget that grew with the port's
drift would absorb exactly the bugs it is there to find. The Flax drift is reported beside
it, so a port that rounds more than torch shows it.

Why rms, and these factors (measured on this CPU, torch 2.13 / jax 0.10; the zoo's seeded
checkpoints at batch 4, MiniLM's real weights, the layer catalogue's hypothesis examples; ratio
cross / torch drift, rms):
- A port whose ops round as torch's do but in another order is an independent rounding stream
  of the same size: rms(cross) ~ sqrt(2) rms(torch drift). Whole networks: ResNet-18 1.38,
  ResNet-50 1.39, ViT-Ti/16 1.36, ViT-B/16 1.28, MiniLM-L6 1.30 (Linen and NNX alike).
- A layer whose Flax side rounds once where torch's kernel does: 0.00-0.05 (LayerNorm,
  GroupNorm, depthwise convolution). Flax's own layers round a step more in places: a bias
  added after the product (Linear up to 2.9 on examples under RMS_MIN_ELEMENTS, convolutions
  1.6-1.8), jax's SiLU 1.97; its BatchNorm (2.8) and avg_pool (2.8, a bfloat16 window
  sum) round more still, so the zoo's ports compute those as torch does.
- Ports that round where torch does not, each a test (tests/parity/test_low_precision_bugs.py):
  float16 activations with bfloat16 weights 8.2, activations in bfloat16 14, LayerNorm
  statistics in bfloat16 on activations of mean 4 19.7, a softmax whose sum accumulates in
  bfloat16 over 197 keys 6.5.
  RMS_FACTOR 3 sits above every correct layer and network (the catalogue's worst margin 0.66,
  SiLU; the zoo's 0.47) and a factor 2 or more below those bugs. MAX_FACTOR 8 only bounds
  single elements (one wrong element hardly moves an rms over thousands): one op's cross error
  reaches 4x torch's largest drift (a step where torch's worst was a quarter step).
- What it cannot catch: one extra rounding, e.g. a softmax in bfloat16 as XLA computes it
  (exponentials rounded, the sum accumulated in float32), moves an attention output by
  0.96-1.22 of torch's drift: no more than Flax's own Linear does, and less than a correct
  deep port's independent rounding. Semantic bugs (a LayerNorm epsilon, a GELU approximation)
  are 10-20x below any bfloat16 budget: the float32 check finds them.
An rms over a few elements says little (one element one step apart in a leaf of four moves it
by half a step); leaves under RMS_MIN_ELEMENTS are held to the element bound alone, whose
rounding step lets two correct roundings of one value differ by a step.
Where torch's low-precision output equals its reference (ReLU, pooling by max, a lookup: the
drift is 0), the budget has nothing to scale and the fixed tolerance applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RMS_FACTOR = 3.0
MAX_FACTOR = 8.0
RMS_MIN_ELEMENTS = 512
# One rounding step relative to the value (the spacing of the dtype's numbers at 1).
ROUNDING_STEP = {"bfloat16": 2.0**-7, "float16": 2.0**-10, "float32": 2.0**-23}

# The reference precision of each dtype a budget is drawn for.
REFERENCE_DTYPES = {"bfloat16": "float32", "float16": "float32", "float32": "float64"}
# The dtypes judged by their budget unless a run, marker or pair says otherwise.
BUDGET_BY_DEFAULT = ("bfloat16", "float16")
# Gradients, in every dtype that has a reference: a parameter's gradient sums over the batch
# and every position, through the whole network backwards, and no fixed float32 tolerance
# holds for it. Measured (ViT-Ti/16, one 224x224 image, the default projection loss): torch's
# own float32 gradient of the class token is 1.3e-5 from its float64 one (5.4 at most), 1.2x
# the float32 table's bound; the Flax port's is 0.9e-5 (pytest_parity.train.gradients).
GRADIENT_BUDGET = tuple(REFERENCE_DTYPES)


@dataclass(frozen=True)
class Drift:
    """How far one framework's low-precision output is from its own reference output."""

    rms: float
    max: float


@dataclass(frozen=True)
class Budget:
    """One leaf's budget: both drifts, the cross error's rms, and what they allow."""

    torch: Drift
    flax: Drift
    cross_rms: float
    dtype: str  # the case's
    reference_dtype: str
    n: int  # the elements compared
    both_sides: bool = False  # allowed: both sides' drifts, not torch's alone

    @property
    def allowed_drift(self) -> Drift:
        """The drift the cross error is held to: torch's, or with `both_sides` both sides'
        together (rms added in quadrature, the larger max): for optimizer steps, where Adam
        turns a gradient's rounding noise into a step of up to the learning rate on either
        side, and what is checked is what each side computes, not how much it rounds."""
        if not self.both_sides:
            return self.torch
        return Drift(rms=float(np.hypot(self.torch.rms, self.flax.rms)),
                     max=max(self.torch.max, self.flax.max))

    @property
    def rms_judged(self) -> bool:
        """Whether enough elements were compared for their rms to judge."""
        return self.n >= RMS_MIN_ELEMENTS

    @property
    def measurable(self) -> bool:
        """Whether torch's own rounding moved its output at all (else the fixed tolerance)."""
        return self.allowed_drift.max > 0.0

    @property
    def atol(self) -> float:
        """The bound on every element: MAX_FACTOR times torch's largest drift ..."""
        return MAX_FACTOR * self.allowed_drift.max

    @property
    def rtol(self) -> float:
        """... and one rounding step of the dtype, relative to torch's value."""
        return ROUNDING_STEP.get(self.dtype, 0.0)

    @property
    def rms_margin(self) -> float:
        """rms(cross) / (RMS_FACTOR * rms(torch drift)): <= 1 passes (0 where too few
        elements were compared for their rms to judge)."""
        if not self.rms_judged:
            return 0.0
        allowed = RMS_FACTOR * self.allowed_drift.rms
        if allowed > 0:
            return self.cross_rms / allowed
        return 0.0 if self.cross_rms == 0 else float("inf")

    def to_record(self) -> dict[str, float | str]:
        return {"reference_dtype": self.reference_dtype, "elements": self.n,
                "torch_drift_rms": self.torch.rms, "torch_drift_max": self.torch.max,
                "flax_drift_rms": self.flax.rms, "flax_drift_max": self.flax.max,
                "cross_rms": self.cross_rms, "rms_factor": RMS_FACTOR,
                "max_factor": MAX_FACTOR, "rms_margin": self.rms_margin,
                "drift_of": "both sides" if self.both_sides else "torch"}


def _drift(low: np.ndarray, reference: np.ndarray, keep: np.ndarray | None) -> Drift:
    error = np.abs(low.astype(np.float64) - reference.astype(np.float64))
    error = np.where(np.isfinite(error), error, 0.0)
    if keep is not None:
        error = error[np.broadcast_to(keep, error.shape)]
    if not error.size:
        return Drift(0.0, 0.0)
    return Drift(rms=float(np.sqrt(np.mean(np.square(error)))), max=float(error.max()))


def leaf_budget(actual: np.ndarray, expected: np.ndarray, actual_reference: np.ndarray,
                expected_reference: np.ndarray, keep: np.ndarray | None, dtype: str,
                both_sides: bool = False) -> Budget:
    """The budget of one leaf in `dtype` (`actual` is Flax's, `expected` torch's), over the
    elements `keep` keeps (all where None); `both_sides`: see Budget.allowed_drift."""
    cross = _drift(actual, expected, keep)
    n = int(np.count_nonzero(np.broadcast_to(keep, expected.shape))) if keep is not None \
        else int(expected.size)
    return Budget(torch=_drift(expected, expected_reference, keep),
                  flax=_drift(actual, actual_reference, keep), cross_rms=cross.rms,
                  dtype=dtype, reference_dtype=REFERENCE_DTYPES[dtype], n=n,
                  both_sides=both_sides)


def element_tolerance(dtype: str, torch_drift_max: float) -> dict[str, float]:
    """The budget's bound on every element as a fixed tolerance, for what judges element by
    element without references of its own (the trace's modules, in pytest_parity.diagnose);
    empty where torch's drift is 0 (the table applies)."""
    if torch_drift_max <= 0:
        return {}
    return {"rtol": ROUNDING_STEP.get(dtype, 0.0), "atol": MAX_FACTOR * torch_drift_max}


def verdict_for(dtype: str, chosen: str,
                budget_by_default: tuple[str, ...] = BUDGET_BY_DEFAULT) -> str:
    """'budget' or 'fixed' for a case of `dtype` under the chosen verdict ('auto': the budget
    for the dtypes `budget_by_default` names, fixed tolerances otherwise; float64 has no
    reference)."""
    if dtype not in REFERENCE_DTYPES:
        return "fixed"
    if chosen == "auto":
        return "budget" if dtype in budget_by_default else "fixed"
    return chosen
