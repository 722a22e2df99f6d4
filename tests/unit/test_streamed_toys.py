"""The streamed check on toy pairs built to trip it: Linen paths inside a block that repeat
a path outside it, a block called twice, a module the forward never calls, a block the Flax
side never calls, a checkpoint with a tensor no rule names, a whole model as one block."""

import flax.linen as nn
import h5py
import numpy as np
import pytest

from pytest_parity import assert_streamed_close
from pytest_parity.checkpoint import checkpoint_from_torch, save
from pytest_parity.errors import CheckpointError, ParityError
from pytest_parity.layouts import Layout
from pytest_parity.mapping import Mapping, Rule, Transpose
from pytest_parity.registry import Pair

torch = pytest.importorskip("torch")


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x):
        return torch.tanh(self.fc(x))


class TorchToy(torch.nn.Module):
    """Two blocks, the first called twice; a head named like the blocks' insides; a module
    the forward never calls."""

    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([TorchBlock(), TorchBlock()])
        self.fc = torch.nn.Linear(8, 4)
        self.unused = torch.nn.Linear(8, 8)

    def forward(self, x):
        x = self.blocks[0](self.blocks[0](x))
        return self.fc(self.blocks[1](x))


class FlaxBlock(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.tanh(nn.Dense(8, name="fc")(x))


class FlaxToy(nn.Module):
    skip_second: bool = False

    @nn.compact
    def __call__(self, x):
        first, second = FlaxBlock(name="blocks_0"), FlaxBlock(name="blocks_1")
        x = first(first(x))
        x = x if self.skip_second else second(x)  # a port that forgot its second block
        return nn.Dense(4, name="fc")(x)


def _linear(torch_name, flax_name):
    return (Rule(f"{flax_name}/kernel", f"{torch_name}.weight", "IO", transform=Transpose((1, 0))),
            Rule(f"{flax_name}/bias", f"{torch_name}.bias", "C"))


MAPPING = Mapping("toy", (*_linear("blocks.{i}.fc", "blocks_{i}/fc"), *_linear("fc", "fc"),
                          *_linear("unused", "unused")))


def _pair(flax=FlaxToy):
    return Pair("toy", TorchToy, flax, MAPPING, input_shape=(2, 8), input_layout=Layout.SAME)


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    return save(tmp_path / "toy.h5", checkpoint_from_torch(TorchToy().state_dict(), _pair()))


INPUTS = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)


@pytest.mark.parametrize("memory", [400, "1GiB"])
def test_repeated_paths_and_a_block_called_twice_pass_split_or_whole(checkpoint, memory):
    """Blocks' own `fc` beside the head `fc`, the first block called twice (judged on its
    first call, run on both): split into blocks, or the whole model one block."""
    result = assert_streamed_close(_pair(), INPUTS, checkpoint=checkpoint, memory=memory)
    assert result.passed
    names = [b.block.torch for b in result.blocks]
    assert names == (["blocks.0", "blocks.1", "fc"] if memory == 400 else [""])


def test_a_damaged_tensor_no_block_reads_still_fails_the_digest(checkpoint):
    with h5py.File(checkpoint, "r+") as h5:
        h5["toy/unused/kernel"][0, 0] += 1.0  # the module the forward never calls
    with pytest.raises(CheckpointError, match=r"(?s)toy.h5.*content digest"):
        assert_streamed_close(_pair(), INPUTS, checkpoint=checkpoint, memory=400)


def test_a_tensor_no_rule_names_is_refused_before_anything_runs(checkpoint, tmp_path):
    from pytest_parity.checkpoint import load

    held = load(checkpoint)
    held.arrays["extra/w"], held.layouts["extra/w"] = np.zeros(3, np.float32), "C"
    with pytest.raises(CheckpointError, match=r"extra/w: no rule of the pair's mapping"):
        assert_streamed_close(_pair(), INPUTS, checkpoint=save(tmp_path / "x.h5", held),
                              memory=400)


def test_a_block_the_flax_side_never_calls_is_named(checkpoint):
    with pytest.raises(AssertionError, match=r"\[parity\] streamed check toy: the block "
                                             r"blocks.1 \(flax blocks_1\) was not called"):
        assert_streamed_close(_pair(lambda: FlaxToy(skip_second=True)), INPUTS,
                              checkpoint=checkpoint, memory=400)


def test_a_dtype_the_check_does_not_know_is_refused(checkpoint):
    with pytest.raises(ParityError, match=r"\[parity\] streamed check toy: dtype='float8'"):
        assert_streamed_close(_pair(), INPUTS, checkpoint=checkpoint, dtype="float8")
