"""A ResNet-50 parity case in a process of its own, for tests/benchmarks/test_process_costs.py.

    python tests/benchmarks/resnet50_case.py case|imports|compile CHECKPOINT_CACHE_DIR

Prints one JSON line: peak resident memory (MB), the checkpoint's size, the compile time.
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _peak_rss_mb() -> float:
    """This process's resident high-water mark. Not getrusage's ru_maxrss: on Linux a child
    inherits its parent's (pytest's) maximum across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def main(mode: str, cache_dir: str) -> dict:
    import jax
    import numpy as np
    import torch  # noqa: F401  (both frameworks, as in any parity case)

    from pytest_parity import assert_close, registry
    from pytest_parity.run import PairCache

    if mode == "imports":
        return {"peak_rss_mb": _peak_rss_mb()}
    pair = registry.get("resnet50")
    loaded = PairCache(Path(cache_dir)).get(pair, "cpu", "float32", seed=0)
    images = np.random.RandomState(1).normal(0, 1, (2, 3, 224, 224)).astype(np.float32)
    if mode == "compile":
        batch = jax.numpy.asarray(images.transpose(0, 2, 3, 1))
        started = time.perf_counter()
        jax.jit(loaded.flax_model.apply).lower(loaded.flax_variables, batch).compile()
        return {"compile_s": time.perf_counter() - started}
    result = assert_close(loaded.flax_forward(images), loaded.torch_forward(images))
    checkpoint_mb = sum(a.nbytes for a in loaded.checkpoint.arrays.values()) / 2**20
    return {"peak_rss_mb": _peak_rss_mb(), "checkpoint_mb": checkpoint_mb,
            "passed": result.passed}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
