# The public names of pytest_parity: the one list. Type checkers read this file; at import,
# pytest_parity/__init__.py reads its `from X import name as name` lines for `__all__` and for
# importing each name on first use. A name added here is public; keep it in the README.
from pytest_parity.compare import DEFAULT_TOLERANCES as DEFAULT_TOLERANCES
from pytest_parity.compare import Comparison as Comparison
from pytest_parity.compare import ParityResult as ParityResult
from pytest_parity.compare import Tolerance as Tolerance
from pytest_parity.compare import assert_close as assert_close
from pytest_parity.compare import assert_trees_close as assert_trees_close  # deprecated
from pytest_parity.errors import ParityDeprecationWarning as ParityDeprecationWarning
from pytest_parity.errors import ParityError as ParityError
from pytest_parity.golden import GoldenFixture as GoldenFixture
from pytest_parity.inputs import Input as Input
from pytest_parity.layouts import Layout as Layout
from pytest_parity.mapping import Chain as Chain
from pytest_parity.mapping import Flip as Flip
from pytest_parity.mapping import Identity as Identity
from pytest_parity.mapping import Mapping as Mapping
from pytest_parity.mapping import MappingError as MappingError
from pytest_parity.mapping import ParityMappingWarning as ParityMappingWarning
from pytest_parity.mapping import Reshape as Reshape
from pytest_parity.mapping import Rule as Rule
from pytest_parity.mapping import Split as Split
from pytest_parity.mapping import Transpose as Transpose
from pytest_parity.mapping import automatic_mapping as automatic_mapping
from pytest_parity.mapping import load_mapping as load_mapping
from pytest_parity.mapping import save_mapping as save_mapping
from pytest_parity.options import DeviceChoice as DeviceChoice
from pytest_parity.options import DtypeName as DtypeName
from pytest_parity.options import NumericsMode as NumericsMode
from pytest_parity.options import TraceMode as TraceMode
from pytest_parity.options import Verdict as Verdict
from pytest_parity.registry import Pair as Pair
from pytest_parity.registry import register as register
from pytest_parity.run import LoadedPair as LoadedPair
from pytest_parity.run import ParityTestResult as ParityTestResult
from pytest_parity.run import StreamedResult as StreamedResult
from pytest_parity.run import assert_streamed_close as assert_streamed_close
from pytest_parity.run import pair_of as pair_of
from pytest_parity.run import parity_test as parity_test
from pytest_parity.strategies import Batch as Batch
from pytest_parity.strategies import declared_inputs as declared_inputs
from pytest_parity.strategies import feature_batches as feature_batches
from pytest_parity.strategies import image_batches as image_batches
from pytest_parity.strategies import inputs_for as inputs_for
from pytest_parity.strategies import sequence_batches as sequence_batches
from pytest_parity.strategies import token_batches as token_batches
from pytest_parity.torchvision_compat import import_torchvision as import_torchvision
from pytest_parity.train import assert_loss_decreases as assert_loss_decreases

__version__: str
