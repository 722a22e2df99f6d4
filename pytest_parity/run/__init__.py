"""Running a pair: both sides on one device and dtype, for registered pairs and for layers.

    sides.py      the one place where a side runs: inputs cast and placed, layouts, no_grad
    loaded.py     a registered pair loaded for a case (`parity_pair`): its comparisons
    loading.py    getting a pair ready: checkpoint, both models, placement; PairCache
    gradients.py  gradient parity of a case: both sides' gradients of one loss
    decorator.py  @parity_test: a torch layer and its Flax port on hypothesis-drawn inputs
    layer_case.py one case of a @parity_test: both sides built once, each example checked
    streamed*.py  a pair too large to hold, block by block (assert_streamed_close)
"""

from pytest_parity.run.decorator import check_parity, parity_test
from pytest_parity.run.gradients import GradientResult
from pytest_parity.run.layer_case import ParityTestResult
from pytest_parity.run.live import pair_of
from pytest_parity.run.loaded import LoadedPair, PairResult
from pytest_parity.run.loading import PairCache, checkpoint_for, load_pair
from pytest_parity.run.sides import placed_variables, run_flax, run_torch
from pytest_parity.run.streamed import BlockResult, StreamedResult
from pytest_parity.run.streamed_check import assert_streamed_close

__all__ = [
    "BlockResult",
    "GradientResult",
    "LoadedPair",
    "PairCache",
    "PairResult",
    "ParityTestResult",
    "StreamedResult",
    "assert_streamed_close",
    "check_parity",
    "checkpoint_for",
    "load_pair",
    "pair_of",
    "parity_test",
    "placed_variables",
    "run_flax",
    "run_torch",
]
