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
import time
from functools import partial

import h5py
import numpy as np
import pytest

from pytest_parity import registry
from pytest_parity.checkpoint import load, save
from tests.support.alternating import seconds_alternately

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
    written = _raw_read(tmp_path / "raw.h5")  # untimed: the last round's file holds the arrays
    assert written.keys() == arrays.keys()
    assert all(np.array_equal(written[key], array) for key, array in arrays.items())


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


def test_pair_ready_nnx_and_linen(benchmark, pair, canonical_file):
    """The same checkpoint to the NNX twin of the pair (models/*/nnx_model.py) and to the Linen
    pair, alternately (a slower spell of the machine weighs on both), the fastest of 11 each
    after one warm-up each; each result freed and collected untimed. The NNX module is built
    abstractly once per process, like Linen's, its state merged at apply time, so getting it
    ready should cost what the Linen pair's does (gate: within 1.2x)."""
    from pytest_parity.registry import flax_module_of
    from pytest_parity.run import load_pair

    benchmark.group = f"{pair.name}: read"
    sides = {"linen": pair, "nnx": registry.get(f"{pair.name}_nnx")}
    for each in sides.values():
        flax_module_of(each)  # built once per process

    def ready(each):
        loaded = load_pair(each, load(canonical_file), "cpu", "float32")
        assert loaded.flax_variables["params"]
        return loaded

    seconds = seconds_alternately(
        benchmark, {side: partial(ready, each) for side, each in sides.items()}, 11,
        collect=True)
    fastest = {side: min(times) * 1e3 for side, times in seconds.items()}
    benchmark.extra_info.update(linen_ready_ms=fastest["linen"], nnx_ready_ms=fastest["nnx"],
                                nnx_over_linen=fastest["nnx"] / fastest["linen"])


def _ready_from_disk(pair, canonical_file):
    """The canonical file to a loaded pair as a case's first call does it: the read (with
    its digest check) and every step of `load_pair`, each step's seconds kept."""
    from pytest_parity.run import load_pair

    started = time.perf_counter()
    checkpoint = load(canonical_file)
    read = time.perf_counter() - started
    loaded = load_pair(pair, checkpoint, "cpu", "float32")
    return loaded, {"read + digest": read, **loaded.ready_seconds}


def test_pair_ready_first_call(benchmark, pair, canonical_file, tmp_path):
    """The pair ready the first time a process asks for it: this process's caches of the
    pair's structure are emptied before each round (meta-device build, shapes); the Flax
    shapes come from the on-disk cache, as on every run after the first."""
    from pytest_parity.checkpoint import convert, shape_cache

    shape_cache.keep_in(tmp_path / "flax-shapes")
    convert.flax_spec(pair)  # traced and written once: the cache every later run finds
    steps = []

    def first_call():
        loaded, seconds = _ready_from_disk(pair, canonical_file)
        steps.append(seconds)
        return loaded

    def setup():
        convert.forget_models()
        gc.collect()
        return (), {}

    benchmark.group = f"{pair.name}: ready"
    loaded = benchmark.pedantic(first_call, setup=setup, rounds=7, warmup_rounds=1)
    shape_cache.keep_in(None)
    assert loaded.flax_variables["params"]
    fastest = min(steps, key=lambda seconds: sum(seconds.values()))
    assert "read + digest" in fastest
    benchmark.extra_info.update({f"{step} s": value for step, value in fastest.items()})


def test_pair_ready_floors(benchmark, pair, canonical_file):
    """The least each step of getting the pair ready must do, in sequence: read every array
    with h5py and hash its bytes (the digest check); copy each array once through the layout
    change torch needs (its transposes); assign the arrays to a torch model already built on
    the meta device; nest the Flax variables and compare their shapes with a spec in memory;
    place them on the device. Their sum is what `test_pair_ready_first_call` is gated
    against (pyproject.toml)."""
    import copy
    import hashlib

    import jax

    from pytest_parity.checkpoint.convert import flax_spec, meta_model
    from pytest_parity.mapping.rules import unflatten
    from pytest_parity.threads import thread_map

    spec = {path: tensor.shape for path, tensor in flax_spec(pair).items()}
    meta = meta_model(pair)
    # Each torch key's rule and canonical pieces, looked up once (not part of any floor).
    resolved = pair.mapping._resolve(load(canonical_file).arrays, "canonical")
    pieces = {rule.torch.format(**groups):
              (rule, [path.format(**groups) for path in rule.canonical_paths])
              for _, rule, _, groups in resolved}
    steps = []

    def floors():
        seconds, started = {}, time.perf_counter()
        arrays = {name.partition("/")[2]: array
                  for name, array in _raw_read(canonical_file).items()}
        thread_map(lambda array: hashlib.sha256(memoryview(array).cast("B")).digest(),
                   arrays.values())  # on every core, as the digest check does
        seconds["read + digest"], started = time.perf_counter() - started, time.perf_counter()
        state = {key: torch.from_numpy(np.ascontiguousarray(rule.to_torch(
            [arrays[path] for path in paths]))) for key, (rule, paths) in pieces.items()}
        seconds["transposes"], started = time.perf_counter() - started, time.perf_counter()
        model = copy.deepcopy(meta)
        model.load_state_dict(state, assign=True, strict=False)
        seconds["torch model"], started = time.perf_counter() - started, time.perf_counter()
        variables = unflatten(arrays)
        assert all(arrays[path].shape == shape for path, shape in spec.items() if path in arrays)
        seconds["flax variables"], started = time.perf_counter() - started, time.perf_counter()
        jax.block_until_ready(jax.device_put(variables))
        seconds["placement"] = time.perf_counter() - started
        steps.append(seconds)
        return model

    benchmark.group = f"{pair.name}: ready"
    def setup():
        gc.collect()
        return (), {}

    benchmark.pedantic(floors, setup=setup, rounds=7, warmup_rounds=1)
    fastest = min(steps, key=lambda seconds: sum(seconds.values()))
    benchmark.extra_info.update({f"{step} s": value for step, value in fastest.items()})
