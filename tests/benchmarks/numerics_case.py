"""A layer's parity case under pinned and under default numerics, timed in a process of its
own, for tests/benchmarks/test_process_costs.py.

    python tests/benchmarks/numerics_case.py [ROUNDS]

Prints one JSON line. The process has imported both frameworks and nothing that compiles, so
a costly first call of a mode's settings shows (`first_call_s`: entering and leaving each
mode's settings once, default's first, so what both modes pay lands on default). Then one
warm-up case (the process' first jit and draw cost ~0.6 s in either mode), and ROUNDS rounds
of the two modes taking turns (which leads alternates), each case on a layer of its own
width so every case compiles afresh (`case_s`: per mode, in order). One case varies 1.0-1.5 s
between fresh processes here, and by ~10% within one: both modes share a process and its
spells.
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _case(mode: str, channels: int) -> float:
    import flax.linen as nn
    import torch

    from pytest_parity import numerics
    from pytest_parity.run import check_parity
    from pytest_parity.strategies import image_batches

    started = time.perf_counter()
    with numerics.applied(mode, seed=0):
        check_parity(torch=lambda: torch.nn.Conv2d(3, channels, 3, padding=1),
                     flax=lambda: nn.Conv(channels, (3, 3), padding=((1, 1), (1, 1))),
                     inputs=image_batches(channels=3, min_size=8, max_size=32),
                     max_examples=10)
    return time.perf_counter() - started


def _first_call(mode: str) -> float:
    from pytest_parity import numerics

    started = time.perf_counter()
    with numerics.applied(mode, seed=0):
        pass
    return time.perf_counter() - started


def main(rounds: int) -> dict:
    import flax.linen  # noqa: F401
    import torch  # noqa: F401

    first_call = {mode: _first_call(mode) for mode in ("default", "pinned")}
    _case("default", 7)
    times: dict[str, list[float]] = {"pinned": [], "default": []}
    for index in range(rounds):  # pinned first, then default first: neither always leads
        modes = ("pinned", "default") if index % 2 == 0 else ("default", "pinned")
        for offset, mode in enumerate(modes):
            times[mode].append(_case(mode, 8 + 2 * index + offset))
    return {"first_call_s": first_call, "case_s": times,
            "compiler_imported": "torch._inductor" in sys.modules}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)))
