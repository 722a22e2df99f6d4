"""The branches of non-smooth ops: which operand a ReLU, max, clamp or select passed on, per
element, and which element won a max pool's window, on each side; where rounding flipped one;
each side's backward taken through another run's branches.

    choices.py        what an op chose (Choice), where two runs chose apart (Flip)
    torch_choices.py  torch's ops seen and pinned, in a TorchFunctionMode
    jax_choices.py    the Flax side's, in a jaxpr interpreter
    report.py         what a verdict says of them (Branches), and its warning
"""

from pytest_parity.branches.choices import Choice, Flip, check_aligned, flips_between
from pytest_parity.branches.jax_choices import Seen, pinned, recorded
from pytest_parity.branches.report import Branches, ParityBranchWarning, drifted_apart
from pytest_parity.branches.torch_choices import TorchChoices

__all__ = [
    "Branches",
    "Choice",
    "Flip",
    "ParityBranchWarning",
    "Seen",
    "TorchChoices",
    "check_aligned",
    "drifted_apart",
    "flips_between",
    "pinned",
    "recorded",
]
