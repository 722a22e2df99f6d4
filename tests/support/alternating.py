"""Timing two (or more) things alternately, round by round, so that a slower spell of a shared
machine weighs on each of them and not on one (a ratio gate compares them)."""

import gc
import time
from collections.abc import Callable
from typing import Any


def seconds_alternately(benchmark: Any, sides: dict[str, Callable[[], Any]], rounds: int, *,
                        collect: bool = False) -> dict[str, list[float]]:
    """Each side's seconds over `rounds` timed rounds after one warm-up round, the sides taking
    turns; under --benchmark-disable one round, kept. What a side returns is freed untimed
    (and, with `collect`, the garbage collected) before the next side runs."""
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    warm_up, total = (0, 1) if benchmark.disabled else (1, rounds + 1)

    def alternating() -> None:
        for _ in range(total):
            for name, side in sides.items():
                started = time.perf_counter()
                result = side()
                seconds[name].append(time.perf_counter() - started)
                del result
                if collect:
                    gc.collect()

    benchmark.pedantic(alternating, rounds=1, iterations=1)
    return {name: times[warm_up:] for name, times in seconds.items()}
