"""`LoadedPair.assert_decoding_close`: the decoding check (pytest_parity.run.decoding) with
its verdict, its record (kind "decoding", one entry per step), its failure text and its
diagnosis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_parity.compare import (
    Comparison,
    ParityRecord,
    default_tolerance,
    format_failure,
    records,
)
from pytest_parity.decoders import Decoding, TransformersFlax, TransformersTorch
from pytest_parity.diagnose import mode
from pytest_parity.errors import PREFIX, ParityError
from pytest_parity.run.decoding import (
    DecodingRun,
    Tie,
    cache_names,
    comparisons,
    decoded,
    first_failing_step,
    references,
    step_key,
    ties_and_misses,
)
from pytest_parity.run.decoding_sides import FlaxSide, TorchSide, programs_for
from pytest_parity.run.decoding_trace import cache_culprit
from pytest_parity.run.reference import wanted

# One object, so that a pair's Flax programs (kept by decoder) serve each of its checks.
TRANSFORMERS = Decoding(TransformersTorch(), TransformersFlax())


@dataclass(frozen=True)
class DecodingResult:
    """What the decoding check found: the two sides compared (every step's logits, the
    cache), each side's cached steps against its own call over the sequence, the tokens."""

    comparison: Comparison
    consistency: dict[str, Comparison]
    tokens: np.ndarray  # (B, N): decoded, torch's choice at each step
    flax_tokens: np.ndarray  # (B, N): the Flax side's own choice at each step
    ties: tuple[Tie, ...]
    misses: tuple[Tie, ...]
    compilations: int  # Flax programs this check compiled (prompt shapes and step: not N)

    @property
    def first_divergent_step(self) -> int | None:
        """The first step whose logits differ beyond the verdict or whose tokens differ by
        more than a tie; None where every step agrees (the cache may still differ)."""
        found = [first_failing_step(self.comparison), *(miss.step for miss in self.misses)]
        return min((step for step in found if step is not None), default=None)

    def first_inconsistent_step(self, side: str) -> int | None:
        return first_failing_step(self.consistency[side])

    @property
    def passed(self) -> bool:
        return self.comparison.passed and not self.misses and all(
            comparison.passed for comparison in self.consistency.values())


def decoding_of(pair: Any) -> Decoding:
    """The pair's decoders: its own (`Pair(decoding=...)`), else transformers' conventions
    where both sides are transformers' causal language models.

    Raises:
        ParityError: a pair that declares none and is not transformers' on both sides."""
    if pair.pair.decoding is not None:
        return pair.pair.decoding
    torch_ok = hasattr(pair.torch_model, "prepare_inputs_for_generation")
    flax_ok = type(pair.flax_model).__module__.startswith("transformers.")
    if torch_ok and flax_ok:
        return TRANSFORMERS
    raise ParityError(f"pair {pair.name!r}: its decoding is not declared; give "
                      "Pair(decoding=Decoding(torch=..., flax=...)) or pair_of(..., "
                      "decoding=...): how each side starts from a prompt and takes a cached "
                      "step (pytest_parity.decoders)")


def checked_prompts(name: str, input_ids: Any, attention_mask: Any, steps: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The prompts as int64 arrays (B, P) and their mask (ones where none is given).

    Raises:
        ParityError: not a batch of token ids, a mask of another shape or not 0/1, a prompt
            padded on the right (decoding appends after the last position), fewer than 1 step.
    """
    ids = np.asarray(input_ids)
    mask = np.ones_like(ids, np.int64) if attention_mask is None else np.asarray(attention_mask)
    where = f"decoding {name!r}"
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ParityError(f"{where}: input_ids must be integer token ids of shape (batch, "
                          f"prompt length); got {ids.dtype} {ids.shape}")
    if mask.shape != ids.shape or not np.isin(mask, (0, 1)).all():
        raise ParityError(f"{where}: attention_mask must be 0/1 of the prompts' shape "
                          f"{ids.shape}; got {mask.dtype} {mask.shape}")
    if not mask[:, -1].all():
        rows = np.nonzero(mask[:, -1] == 0)[0].tolist()
        raise ParityError(f"{where}: rows {rows} end in padding; decoding appends after the "
                          "last position, so pad prompts on the left")
    if steps < 1:
        raise ParityError(f"{where}: steps={steps}; at least 1")
    return ids.astype(np.int64), mask.astype(np.int64)


def flax_side(pair: Any, module: Any, variables: Any, decoding: Decoding) -> FlaxSide:
    """The pair's Flax side (or its reference: another module), with the programs the pair
    keeps for it (LoadedPair.decoding_programs)."""
    return FlaxSide(module, variables, decoding.flax, pair.device,
                    shared=programs_for(pair.decoding_programs, module, decoding.flax))


def run_check(pair: Any, input_ids: Any, attention_mask: Any, *, steps: int,
              decoding: Decoding | None, tolerance: dict[str, float], name: str
              ) -> tuple[DecodingResult, DecodingRun, Decoding]:
    ids, mask = checked_prompts(name, input_ids, attention_mask, steps)
    decoding = decoding or decoding_of(pair)
    names = cache_names(pair.torch_model)
    run = decoded(TorchSide(pair.torch_model, decoding.torch, pair.device),
                  flax_side(pair, pair.flax_model, pair.flax_variables, decoding), ids, mask,
                  steps, names)
    refs = None
    if wanted(pair.dtype):
        sides = pair.reference
        refs = references(TorchSide(sides.torch_model, decoding.torch, pair.device),
                          flax_side(pair, sides.flax_module, sides.flax_variables, decoding),
                          sides.reference_dtype, run, names)
    cross, consistency = comparisons(run, refs, tolerance, name)
    ties, misses = ties_and_misses(run, cross)
    return (DecodingResult(cross, consistency, run.tokens, run.flax_tokens, tuple(ties),
                           tuple(misses), run.compilations), run, decoding)


def step_figures(result: DecodingResult) -> list[dict[str, Any]]:
    """The record's per-step figures: the logits' max abs and margin, the rows where the
    two sides chose differently (tie or not)."""
    leaves = {leaf.path: leaf for leaf in result.comparison.leaves}
    differing = {(t.step, t.row): "tie" for t in result.ties}
    differing.update({(t.step, t.row): "differs" for t in result.misses})
    figures = []
    for step in range(result.tokens.shape[1]):
        leaf = leaves[f"logits/{step_key(step)}"]
        figures.append({"step": step, "max_abs": leaf.max_abs, "margin": leaf.margin,
                        "passed": leaf.passed,
                        "tokens": {str(row): kind for (at, row), kind in differing.items()
                                   if at == step}})
    return figures


def decoding_record(result: DecodingResult, pair_name: str) -> ParityRecord:
    return result.comparison.to_record().with_fields(
        kind="decoding", pair=pair_name, passed=result.passed,
        steps=step_figures(result), tokens=result.tokens.tolist(),
        first_divergent_step=result.first_divergent_step, ties=len(result.ties),
        consistency={side: {"passed": c.passed, "margin": c.margin,
                            "first_step": result.first_inconsistent_step(side)}
                     for side, c in result.consistency.items()},
        compilations=result.compilations)


def failure_text(result: DecodingResult, name: str, dtype: str) -> list[str]:
    batch, steps = result.tokens.shape
    first = result.first_divergent_step
    where = (f"the first divergent step is {first} (of {steps}; 0 is the prompt's call)"
             if first is not None else "every step's logits and tokens agree")
    lines = [f"{PREFIX} decoding {name!r} in {dtype}, {batch} prompts, {steps} steps: {where}"]
    for figure in step_figures(result):
        if not figure["passed"] or figure["tokens"]:
            rows = ", ".join(f"row {row} {kind}" for row, kind in figure["tokens"].items())
            lines.append(f"  step {figure['step']}: logits max abs {figure['max_abs']:.3g}, "
                         f"margin {figure['margin']:.3g}{'; tokens: ' + rows if rows else ''}")
            if len(lines) > 6:
                lines.append("  ...")
                break
    for tie in result.ties[:3]:
        lines.append(f"  tie at step {tie.step}, row {tie.row}: torch {tie.torch_token}, flax "
                     f"{tie.flax_token} (gap {tie.gap:.3g} within {tie.allowed:.3g}); both went "
                     "on from torch's")
    for side, comparison in result.consistency.items():
        step = result.first_inconsistent_step(side)
        said = ("its cached steps equal one call over the sequence" if comparison.passed else
                f"step {step} is the first whose cached logits differ from one call over the "
                "sequence" if step is not None else
                "its cache differs from what one call over the sequence writes")
        lines.append(f"  cache consistency, {side}: {said} (margin {comparison.margin:.3g})")
    failing = [c for c in (result.comparison, *result.consistency.values()) if not c.passed]
    return [*lines, *(format_failure(c) for c in failing)]


def diagnosis_lines(pair: Any, result: DecodingResult, run: DecodingRun, decoding: Decoding,
                    tolerance: dict[str, float], record: ParityRecord
                    ) -> tuple[list[str], ParityRecord]:
    """Where the decoding goes wrong: each side whose cached steps are not its own call over
    the sequence followed through its modules; the pair's trace of the first divergent step's
    call without a cache (the prompt and the tokens before it)."""
    lines: list[str] = []
    table = default_tolerance(pair.dtype)
    own = tolerance or {"rtol": table.rtol, "atol": table.atol}
    for side_name, side in (("torch", TorchSide(pair.torch_model, decoding.torch, pair.device)),
                            ("flax", flax_side(pair, pair.flax_model, pair.flax_variables,
                                               decoding))):
        step = result.first_inconsistent_step(side_name)
        if step is not None:
            culprit = cache_culprit(side_name, side, run, step, own)
            lines.append(culprit.line() if culprit else f"  {side_name} side, step {step}: "
                         "no module's output differs at the step's position")
            record = record.with_fields(**{f"cache_trace_{side_name}": culprit.__dict__
                                           if culprit else None})
    first = result.first_divergent_step
    if first is not None:
        length = run.prompt_length + first
        declared = {d.name for d in pair.pair.inputs}
        inputs = {key: value for key, value in decoding.torch.inputs(
            run.sequence[:, :length], run.mask[:, :length]).items() if key in declared}
        flax_inputs = {key: value for key, value in decoding.flax.inputs(
            run.sequence[:, :length], run.mask[:, :length]).items() if key in declared}
        found = pair.diagnose(inputs, flax_inputs=flax_inputs)
        lines += [f"{PREFIX} step {first}'s call without a cache:", *found.lines()]
        record = record.with_fields(diagnosis=found.to_record())
    return lines, record


def check_decoding(pair: Any, input_ids: Any, attention_mask: Any, *, steps: int,
                   decoding: Decoding | None, rtol: float | None, atol: float | None,
                   name: str | None) -> DecodingResult:
    """LoadedPair.assert_decoding_close."""
    __tracebackhide__ = True
    name = name or pair.name
    tolerance = pair.tolerance(rtol, atol)
    result, run, decoding = run_check(pair, input_ids, attention_mask, steps=steps,
                                      decoding=decoding, tolerance=tolerance, name=name)
    record = decoding_record(result, pair.name)
    lines: list[str] = []
    if mode.wanted(result.passed):
        try:
            lines, record = diagnosis_lines(pair, result, run, decoding, tolerance, record)
        except Exception as error:  # the diagnosis never hides the failure it explains
            record = record.with_fields(diagnosis_error=f"{type(error).__name__}: {error}")
            lines = [f"{PREFIX} no diagnosis: it failed with {record['diagnosis_error']}"]
    records.emit(record)
    if not result.passed:
        raise AssertionError("\n".join([*failure_text(result, name, pair.dtype), *lines]))
    return result
