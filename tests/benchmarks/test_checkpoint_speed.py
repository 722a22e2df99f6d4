"""What checkpoint conversion costs next to the least any conversion must do.

For ResNet-50 and ViT-B/16, in one run: torch state dict -> canonical .h5 next to a raw h5py
write of the same arrays; .h5 -> Flax variables next to a raw h5py read; torch state dict ->
Flax variables in memory next to a plain copy of every array. The read is timed with and
without the digest check (sha256 of every byte, as much work as the read itself here).
Targets: file steps within
1.2x of raw h5py, the in-memory conversion within 2x of the plain copy; the ratios are
printed at the end of the run (tests/benchmarks/conftest.py).
"""

import gc

import h5py
import pytest

from pytest_parity import registry
from pytest_parity.checkpoint import load, save

pytest.importorskip("pytest_benchmark")
torch = pytest.importorskip("torch")
pytest.importorskip("flax")

ROUNDS = 5


@pytest.fixture(scope="module", params=["resnet50", "vit_b_16"])
def pair(request):
    return registry.get(request.param)


@pytest.fixture(scope="module")
def state(pair):
    torch.manual_seed(0)
    return pair.torch_model().state_dict()


@pytest.fixture(scope="module")
def canonical_file(pair, state, tmp_path_factory):
    from pytest_parity.checkpoint.convert import checkpoint_from_torch, flax_spec

    flax_spec(pair)  # the module's structure is traced once per session, not per conversion
    path = tmp_path_factory.mktemp(pair.name) / f"{pair.name}.h5"
    return save(path, checkpoint_from_torch(state, pair))


def _raw_write(path, arrays):
    with h5py.File(path, "w") as h5:
        for key, array in arrays.items():
            h5.create_dataset(key, data=array)


def _raw_read(path):
    with h5py.File(path, "r") as h5:
        arrays = {}
        h5.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                      if isinstance(item, h5py.Dataset) else None)
        return arrays


def _run(benchmark, pair, group, function, *args, target=None, rounds=ROUNDS):
    """Time `function(*args)`; a file `target` is removed before each round and the previous
    round's result is freed, untimed, so that freeing it (~200 ms for ViT-B/16's file here) is
    charged to no one."""
    benchmark.group = f"{pair.name}: {group}"
    kept = []

    def timed(*arguments):
        kept.append(function(*arguments))
        return kept[-1]

    def setup():
        kept.clear()
        gc.collect()
        if target is not None:
            target.unlink(missing_ok=True)
        return args, {}

    return benchmark.pedantic(timed, setup=setup, rounds=rounds, warmup_rounds=1)


def test_torch_to_h5(benchmark, pair, state, canonical_file, tmp_path):
    from pytest_parity.checkpoint import checkpoint_from_torch

    def convert():
        save(tmp_path / "out.h5", checkpoint_from_torch(state, pair))

    _run(benchmark, pair, "write", convert, target=tmp_path / "out.h5")
    assert load(tmp_path / "out.h5").digest() == load(canonical_file).digest()


def test_raw_h5py_write(benchmark, pair, state, tmp_path):
    arrays = {key: value.numpy() for key, value in state.items()}
    _run(benchmark, pair, "write", _raw_write, tmp_path / "raw.h5", arrays,
         target=tmp_path / "raw.h5")


def test_h5_to_flax(benchmark, pair, canonical_file):
    from pytest_parity.checkpoint import checkpoint_to_flax

    def convert():
        return checkpoint_to_flax(load(canonical_file), pair, canonical_file)

    variables = _run(benchmark, pair, "read", convert)
    assert set(variables) <= {"params", "batch_stats"}


def test_h5_to_flax_digest_unverified(benchmark, pair, canonical_file):
    from pytest_parity.checkpoint import checkpoint_to_flax

    def convert():
        return checkpoint_to_flax(load(canonical_file, verify_digest=False), pair, canonical_file)

    assert "params" in _run(benchmark, pair, "read", convert)


def test_raw_h5py_read(benchmark, pair, canonical_file):
    arrays = _run(benchmark, pair, "read", _raw_read, canonical_file)
    assert len(arrays) == len(load(canonical_file).arrays)


def test_torch_to_flax_in_memory(benchmark, pair, state, canonical_file):
    from pytest_parity.checkpoint import checkpoint_from_torch, checkpoint_to_flax

    variables = _run(benchmark, pair, "in memory",
                     lambda: checkpoint_to_flax(checkpoint_from_torch(state, pair), pair))
    assert "params" in variables


def test_plain_copy(benchmark, pair, state):
    copies = _run(benchmark, pair, "in memory",
                  lambda: {key: value.numpy().copy() for key, value in state.items()})
    assert len(copies) == len(state)


def test_pair_ready(benchmark, pair, canonical_file):
    """Checkpoint on disk -> both models ready on the CPU (torch model loaded, Flax variables
    placed, apply wrapped in jit; compiling is the compile benchmark's, not this one's)."""
    from pytest_parity.run import load_pair

    # More rounds: its minimum varied 2.8x-4.3x the raw read over 5 rounds (page faults of
    # ~300 MB of fresh allocations each round).
    loaded = _run(benchmark, pair, "read",
                  lambda: load_pair(pair, load(canonical_file), "cpu", "float32"), rounds=11)
    assert loaded.flax_variables["params"]


def test_pair_ready_nnx(benchmark, pair, canonical_file):
    """The same checkpoint to the NNX twin of the pair (models/*/nnx_model.py): its Flax side
    built abstractly (once per process, like Linen's) and its state merged at apply time, so
    getting it ready should cost what the Linen pair's does (gate: within 1.2x)."""
    from pytest_parity.registry import flax_module_of
    from pytest_parity.run import load_pair

    nnx_pair = registry.get(f"{pair.name}_nnx")
    flax_module_of(nnx_pair)  # built once per process, as the Linen pair's module is
    loaded = _run(benchmark, pair, "read",
                  lambda: load_pair(nnx_pair, load(canonical_file), "cpu", "float32"),
                  rounds=11)
    assert loaded.flax_variables["params"]
