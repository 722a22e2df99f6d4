"""A layer's parity case, timed in a process of its own under one numerics mode, for
tests/benchmarks/test_process_costs.py.

    python tests/benchmarks/numerics_case.py pinned|default

Prints one JSON line: the case's seconds, from a process that has imported both frameworks
and nothing that compiles (a costly first call of a setting shows only there).
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(mode: str) -> dict:
    import flax.linen as nn
    import torch

    from pytest_parity import numerics
    from pytest_parity.run import check_parity
    from pytest_parity.strategies import image_batches

    started = time.perf_counter()
    with numerics.applied(mode, seed=0):
        result = check_parity(torch=lambda: torch.nn.Conv2d(3, 8, 3, padding=1),
                              flax=lambda: nn.Conv(8, (3, 3), padding=((1, 1), (1, 1))),
                              inputs=image_batches(channels=3, min_size=8, max_size=32),
                              max_examples=10)
    return {"case_s": time.perf_counter() - started, "examples": result.examples,
            "compiler_imported": "torch._inductor" in sys.modules}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
