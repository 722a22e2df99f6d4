"""What a parity comparison costs next to numpy's own closeness check on the same arrays."""

import numpy as np
import pytest

from pytest_parity.compare import compare

pytest.importorskip("pytest_benchmark")

# ViT-B/16 final tokens at batch 8: 8 x 197 x 768 float32.
SHAPE = (8, 197, 768)


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    expected = rng.standard_normal(SHAPE).astype(np.float32)
    return expected + np.float32(1e-6) * rng.standard_normal(SHAPE).astype(np.float32), expected


@pytest.mark.benchmark(group="compare")
def test_compare(benchmark, arrays):
    result = benchmark(compare, *arrays)
    assert result.passed


@pytest.mark.benchmark(group="compare")
def test_numpy_allclose_baseline(benchmark, arrays):
    assert benchmark(np.allclose, *arrays, rtol=1.3e-6, atol=1e-5)
