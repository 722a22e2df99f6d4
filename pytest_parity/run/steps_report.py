"""Where a failing steps check starts: the first step after which the sides' parameters part
ways, and the parameters that do, nearest the output first."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pytest_parity.branches import Flip, flips_between
from pytest_parity.compare import GRADIENT_BUDGET, Comparison, compared, records
from pytest_parity.errors import PREFIX
from pytest_parity.mapping import Mapping
from pytest_parity.run.gradient_report import parting_lines
from pytest_parity.train import Trained


def first_parting_lines(flax_side: Trained, torch_side: Trained, flax_wide: Trained,
                        torch_wide: Trained, label: str, mapping: Mapping | None,
                        comparison: Comparison) -> list[str]:
    """The cause a steps failure opens with, from each side's parameters after every step
    (and their reference runs', for the budget); none where they were not kept."""
    steps = zip(flax_side.after_each_step, torch_side.after_each_step,
                flax_wide.after_each_step, torch_wide.after_each_step, strict=True)
    for number, (flax_after, torch_after, flax_reference, torch_reference) in enumerate(steps):
        with records.collecting():  # a step of the check, not a comparison of its own
            step = compared({"params": flax_after}, {"params": torch_after},
                            name=f"{label}: after step {number + 1}",
                            reference=({"params": flax_reference}, {"params": torch_reference}),
                            budget_by_default=GRADIENT_BUDGET, both_sides=True)
        if not step.passed:
            return [f"{PREFIX} the sides part ways at step {number + 1} of "
                    f"{len(flax_side.after_each_step)}: every parameter agrees before it",
                    *parting_lines(step, mapping, f"parameters after step {number + 1}")]
    if not flax_side.after_each_step:
        return []
    groups = Counter(leaf.path.split("/")[0] for leaf in comparison.failing)
    return [f"{PREFIX} every parameter agrees after every step; what differs: " + ", ".join(
        f"{group} ({count} leaves)" for group, count in groups.most_common())]


def steps_flips(torch_side: Trained, torch_wide: Trained, flax_side: Trained,
                flax_wide: Trained) -> list[Flip]:
    """The elements whose choice moved between each side's steps in the case's dtype and in
    its reference dtype, step by step, torch's first."""
    return [flip for side, mine, theirs in (("torch", torch_side, torch_wide),
                                            ("Flax", flax_side, flax_wide))
            for number, (own, reference) in enumerate(zip(mine.choices, theirs.choices,
                                                          strict=True))
            for flip in flips_between(own, reference, side, number)]


def listed(values: Any) -> str:
    return "[" + ", ".join(f"{value:.6g}" for value in values) + "]"
