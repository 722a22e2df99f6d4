"""The plugin's fixtures. Importing this module imports no framework; each fixture imports
what it needs when a test asks for it.

- `parity_device`, `parity_dtype`: the case's device ('cpu'/'gpu') and dtype ('float32', ...);
  a case that cannot run here is skipped with the reason.
- `parity_seed`: `--parity-seed` (default 0).
- `parity_checkpoint("resnet50")`: the pair's canonical checkpoint for the seed.
- `parity_pair("resnet50")`: both models loaded from that checkpoint onto the case's device
  and dtype (pytest_parity.run.loaded.LoadedPair), cached per session and per xdist worker.
- `parity_golden`: outputs held to golden files (pytest_parity.golden.fixture); `golden`, its
  old name, still works for this release and warns (ParityDeprecationWarning).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_parity.caches import CHECKPOINTS_DIR, tmp_checkpoints_dir
from pytest_parity.cases import SETTINGS, Settings

if TYPE_CHECKING:  # types only: the plugin loads without numpy, torch or jax
    from pytest_parity.checkpoint import Checkpoint
    from pytest_parity.golden import GoldenFixture
    from pytest_parity.registry import Pair
    from pytest_parity.run import LoadedPair

_pair_cache_key = pytest.StashKey[Any]()


def _settings(config: pytest.Config) -> Settings:
    return config.stash[SETTINGS]


def _cache_dir(config: pytest.Config) -> Path:
    """Where generated checkpoints are kept: pytest's cache, else the temporary directory."""
    cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider
    if cache is not None:
        return cache.mkdir(CHECKPOINTS_DIR)
    return tmp_checkpoints_dir()


@contextmanager
def _failing_cleanly() -> Iterator[None]:
    """A ParityError (an unknown name, a cache path holding something else, a checkpoint that
    does not fit) fails the test with its message alone: a traceback through the fixture
    would say nothing the message does not."""
    from pytest_parity.errors import ParityError

    try:
        yield
    except ParityError as error:
        raise pytest.fail.Exception(str(error), pytrace=False) from None


def _case_param(request: pytest.FixtureRequest, name: str, default: str) -> str:
    callspec = getattr(request.node, "callspec", None)
    value = callspec.params.get(name) if callspec else None
    return value or default


@pytest.fixture
def parity_device(request: pytest.FixtureRequest) -> str:
    """The device of this parity case: 'cpu' or 'gpu'."""
    from pytest_parity import devices

    device = _case_param(request, "parity_device", "cpu")
    problems = devices.missing_frameworks()
    if device == "gpu" and not problems:
        problems = devices.gpu_problems()
    if problems:
        pytest.skip("; ".join(problems))
    return device


@pytest.fixture
def parity_dtype(request: pytest.FixtureRequest) -> str:
    """The dtype of this parity case: 'float32', 'bfloat16', 'float16' or 'float64'."""
    from pytest_parity import devices

    dtype = _case_param(request, "parity_dtype", "float32")
    # The device's own skip (no GPU, no framework) comes first and says more.
    device = request.getfixturevalue("parity_device") if "parity_device" in \
        request.fixturenames else "cpu"
    problem = devices.dtype_problem(device, dtype)
    if problem:
        pytest.skip(problem)
    return dtype


@pytest.fixture
def parity_seed(request: pytest.FixtureRequest) -> int:
    """The run's seed (`--parity-seed`, ini parity_seed; default 0)."""
    seed: int = _settings(request.config).seed
    return seed


@pytest.fixture
def parity_checkpoint(request: pytest.FixtureRequest, parity_seed: int
                      ) -> Callable[[str], Checkpoint]:
    """`parity_checkpoint(name)`: the registered pair's canonical checkpoint for the seed."""
    from pytest_parity import registry
    from pytest_parity.run import checkpoint_for

    def get(name: str) -> Checkpoint:
        with _failing_cleanly():
            return checkpoint_for(registry.get(name), parity_seed, _cache_dir(request.config))

    return get


@pytest.fixture
def parity_pair(request: pytest.FixtureRequest, parity_device: str, parity_dtype: str,
                parity_seed: int) -> Callable[[str | Pair], LoadedPair]:
    """`parity_pair(name)`: the registered pair's torch model and Flax apply with variables,
    on this case's device and dtype, from its canonical checkpoint (cached per session); a
    `Pair` not registered (`parity_pair(Pair(...))`) is loaded the same way."""
    for module in ("torch", "jax", "flax"):
        pytest.importorskip(module)
    from pytest_parity import registry
    from pytest_parity.run import PairCache

    config = request.config
    if _pair_cache_key not in config.stash:
        config.stash[_pair_cache_key] = PairCache(_cache_dir(config))
    cache: PairCache = config.stash[_pair_cache_key]

    def get(name: str | registry.Pair) -> LoadedPair:
        with _failing_cleanly():
            pair = name if isinstance(name, registry.Pair) else registry.get(name)
            return cache.get(pair, parity_device, parity_dtype, parity_seed)

    return get


@pytest.fixture
def parity_golden(request: pytest.FixtureRequest) -> GoldenFixture:
    """Hold outputs to golden files: `parity_golden.check(outputs, name=...)`;
    `parity_golden.read(name)`."""
    from pytest_parity.golden import GoldenFixture

    settings = _settings(request.config)
    callspec = getattr(request.node, "callspec", None)
    params = callspec.params if callspec else {}
    context = {"test": request.node.nodeid, "seed": settings.seed,
               "device": params.get("parity_device", "cpu"),
               "dtype": params.get("parity_dtype", "float32")}
    return GoldenFixture(settings.golden_dir, request.node.nodeid, settings.update_golden,
                         context)


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> GoldenFixture:
    """Deprecated: `parity_golden` (the plugin's fixtures are named parity_*); warns, then
    gives it."""
    import warnings

    from pytest_parity.errors import ParityDeprecationWarning, deprecated

    warnings.warn(deprecated("the fixture 'golden'", "'parity_golden'"),
                  ParityDeprecationWarning, stacklevel=1)
    fixture: GoldenFixture = request.getfixturevalue("parity_golden")
    return fixture
