"""Parse the plugin's option values at the door, so a bad value fails before any test runs.

Every parser raises argparse.ArgumentTypeError with the bad value and a valid example; the
same parsers read the ini options, where the plugin turns the error into a usage error.
"""

from __future__ import annotations

import argparse
import math
from typing import Literal, cast, get_args

# The modes, as types (strings keep working: a Literal is its strings); exported at the top.
DeviceChoice = Literal["cpu", "gpu", "all", "auto"]  # the run's; a case's is "cpu" or "gpu"
DtypeName = Literal["float32", "bfloat16", "float16", "float64"]
NumericsMode = Literal["pinned", "default"]
TraceMode = Literal["on-failure", "always", "off"]
# How a case is judged: auto (its error budget for bfloat16/float16, fixed tolerances for
# float32/float64), budget (float32 too), fixed (the tolerance table everywhere).
Verdict = Literal["auto", "budget", "fixed"]

DEVICE_CHOICES: tuple[DeviceChoice, ...] = get_args(DeviceChoice)
DTYPE_CHOICES: tuple[DtypeName, ...] = get_args(DtypeName)
NUMERICS_CHOICES: tuple[NumericsMode, ...] = get_args(NumericsMode)
TRACE_MODES: tuple[TraceMode, ...] = get_args(TraceMode)
VERDICT_CHOICES: tuple[Verdict, ...] = get_args(Verdict)


def _bad(value: object, expected: str, example: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(
        f"Could not parse value: {value!r}. Expected {expected}, e.g. '{example}'.")


def parse_device(value: str) -> DeviceChoice:
    """`--parity-device`: one of cpu, gpu, all, auto."""
    device = value.strip().lower()
    if device not in DEVICE_CHOICES:
        raise _bad(value, f"one of {', '.join(DEVICE_CHOICES)}", "--parity-device=cpu")
    return device


def parse_dtypes(value: str) -> tuple[DtypeName, ...]:
    """`--parity-dtype`: a comma-separated list of float32, bfloat16, float16, float64."""
    names = [name.strip().lower() for name in value.split(",")]
    if not names or any(name not in DTYPE_CHOICES for name in names):
        raise _bad(value, f"a comma-separated list of {', '.join(DTYPE_CHOICES)}",
                   "--parity-dtype=float32,bfloat16")
    return cast(tuple[DtypeName, ...], tuple(dict.fromkeys(names)))  # in order, no repeats


def parse_tolerance(value: str) -> float:
    """`--parity-rtol` / `--parity-atol`: a finite number >= 0."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise _bad(value, "a finite number >= 0", "--parity-atol=1e-5")
    return number


def parse_seed(value: str) -> int:
    """`--parity-seed`: an integer in [0, 2**32)."""
    try:
        seed = int(value)
    except ValueError:
        seed = -1
    if not 0 <= seed < 2**32:
        raise _bad(value, "an integer from 0 to 2**32 - 1", "--parity-seed=0")
    return seed


def parse_numerics(value: str) -> NumericsMode:
    """`--parity-numerics`: pinned (reproducible settings) or default (the frameworks' own)."""
    numerics = value.strip().lower()
    if numerics not in NUMERICS_CHOICES:
        raise _bad(value, f"one of {', '.join(NUMERICS_CHOICES)}", "--parity-numerics=pinned")
    return numerics


def parse_jax_cache(value: str) -> str:
    """`--parity-jax-cache`: a directory, or none (the cache off)."""
    path = value.strip()
    if not path:
        raise _bad(value, "a directory or none", "--parity-jax-cache=.pytest_cache/xla")
    return "none" if path.lower() == "none" else path


def parse_trace(value: str) -> TraceMode:
    """`--parity-trace`: when a pair comparison is diagnosed (on-failure, always, off)."""
    mode = value.strip().lower()
    if mode not in TRACE_MODES:
        raise _bad(value, f"one of {', '.join(TRACE_MODES)}", "--parity-trace=on-failure")
    return mode


def parse_verdict(value: str) -> Verdict:
    """`--parity-verdict`: auto, budget or fixed (pytest_parity.compare.budget)."""
    verdict = value.strip().lower()
    if verdict not in VERDICT_CHOICES:
        raise _bad(value, f"one of {', '.join(VERDICT_CHOICES)}", "--parity-verdict=fixed")
    return verdict
