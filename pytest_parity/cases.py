"""The run's parity settings (command line over ini) and the cases a test expands to.

A test that takes `parity_device` and/or `parity_dtype` (directly or through `parity_pair`)
runs once per device and dtype that both the run (`--parity-device`, `--parity-dtype`) and
its `parity` marker (`devices=`, `dtypes=`) allow; ids read `[cpu-float32]`.
"""

from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_parity import options
from pytest_parity.caches import XLA_DIR
from pytest_parity.options import DeviceChoice, DtypeName, NumericsMode, TraceMode, Verdict

if TYPE_CHECKING:  # a type only: the plugin loads without numpy
    from pytest_parity.compare import Layer

MARKER_DEVICES = ("cpu", "gpu")

# option dest (also its ini name), parser, default, help (the ini's help names the option)
OPTIONS: list[tuple[str, Callable[[str], Any], str, str]] = [
    ("parity_device", options.parse_device, "cpu",
     "device of parity cases: cpu, gpu, all (cpu and gpu; gpu skipped where absent) or auto "
     "(gpu when torch and jax both see one). Default: cpu."),
    ("parity_dtype", options.parse_dtypes, "float32",
     "dtypes of parity cases, comma-separated: float32, bfloat16, float16, float64. "
     "Default: float32."),
    ("parity_rtol", options.parse_tolerance, "",
     "relative tolerance of every comparison, over the pair's and the marker's."),
    ("parity_atol", options.parse_tolerance, "",
     "absolute tolerance of every comparison, over the pair's and the marker's."),
    ("parity_verdict", options.parse_verdict, "auto",
     "how comparisons are judged: auto (bfloat16/float16 by their error budget: both sides "
     "also run in float32 and the cross error must stay within what torch's own rounding "
     "does; float32 by fixed tolerances), budget (float32 too, against float64) or fixed "
     "(the tolerance table everywhere). Default: auto."),
    ("parity_seed", options.parse_seed, "0",
     "seed of seeded checkpoints and of torch's generator in each case. Default: 0."),
    ("parity_numerics", options.parse_numerics, "pinned",
     "pinned (jax matmul precision highest, torch TF32 off, deterministic algorithms) or "
     "default (the frameworks' fast defaults). Default: pinned."),
    ("parity_trace", options.parse_trace, "on-failure",
     "when a failing pair comparison is diagnosed (weight and settings audits, the first "
     "divergent module): on-failure, always or off. Default: on-failure."),
    ("parity_jax_cache", options.parse_jax_cache, "",
     "directory of jax's persistent compilation cache for parity cases, or none. Default: "
     ".pytest_cache/d/parity-xla, unless jax has a cache directory of yours."),
]


# Old ini names, read for one release with a deprecation warning; the new name wins.
DEPRECATED_INI = {"parity_devices": "parity_device", "parity_dtypes": "parity_dtype"}


@dataclass(frozen=True)
class Settings:
    device: DeviceChoice
    dtypes: tuple[DtypeName, ...]
    rtol: float | None
    atol: float | None
    seed: int
    numerics: NumericsMode
    trace: TraceMode
    verdict: Verdict
    update_golden: bool
    golden_dir: Path
    jax_cache: Path | None
    # Given by the option or the ini: then it wins over a jax cache the user set (jax_cache.py).
    jax_cache_explicit: bool = False

    def layers(self) -> list[Layer]:
        return [("command line", self.rtol, self.atol)]

    def to_record(self) -> dict[str, Any]:
        return {"device": self.device, "dtypes": list(self.dtypes), "rtol": self.rtol,
                "atol": self.atol, "seed": self.seed, "numerics": self.numerics,
                "trace": self.trace, "verdict": self.verdict,
                "jax_cache": str(self.jax_cache) if self.jax_cache else None}


# Where the plugin keeps them for the session (pytest's stash), read by hooks and fixtures.
SETTINGS = pytest.StashKey[Settings]()
DEVICES = pytest.StashKey[list[str]]()  # the run's devices, resolved once: ['cpu', 'gpu']


def _ini_value(config: pytest.Config, dest: str, default: str) -> tuple[str, str]:
    """The ini option that sets `dest` and its text: its own name, else a deprecated old name
    (with a warning naming the new one), else the default ('' for none)."""
    old = next((old for old, new in DEPRECATED_INI.items() if new == dest), None)
    text = config.getini(dest)
    if old is not None and config.getini(old) != "":
        from pytest_parity.errors import ParityDeprecationWarning, deprecated

        config.issue_config_time_warning(ParityDeprecationWarning(deprecated(
            f"the ini option {old}", dest if text == "" else f"{dest} (set too; it wins)")),
            stacklevel=2)
        if text == "":
            return old, config.getini(old)
    return dest, text or default


def read_settings(config: pytest.Config) -> Settings:
    """The command line's values, else the ini's (parsed by the same parsers).

    Raises:
        pytest.UsageError: an ini value does not parse; names the ini option.
    """
    values: dict[str, Any] = {}
    for dest, parse, default, _ in OPTIONS:
        value = config.getoption(dest)
        ini, text = _ini_value(config, dest, default)
        if value is None and text != "":
            try:
                value = parse(text)
            except argparse.ArgumentTypeError as error:
                raise pytest.UsageError(f"ini option {ini}: {error}") from None
        values[dest] = value
    golden_dir = Path(config.getini("parity_golden_dir"))
    return Settings(
        device=values["parity_device"], dtypes=values["parity_dtype"],
        rtol=values["parity_rtol"], atol=values["parity_atol"], seed=values["parity_seed"],
        numerics=values["parity_numerics"], trace=values["parity_trace"],
        verdict=values["parity_verdict"],
        update_golden=bool(config.getoption("parity_update_golden")),
        golden_dir=golden_dir if golden_dir.is_absolute() else config.rootpath / golden_dir,
        jax_cache=_jax_cache_dir(config, values["parity_jax_cache"]),
        jax_cache_explicit=values["parity_jax_cache"] is not None,
    )


def _jax_cache_dir(config: pytest.Config, value: str | None) -> Path | None:
    """The option's directory; by default one in pytest's cache (none without the cache):
    where `config.cache.mkdir(XLA_DIR)` would make it, but not made here (jax makes it at the
    first compile into it), so that a suite without parity cases leaves none behind."""
    if value == "none":
        return None
    if value is not None:
        return Path(value) if Path(value).is_absolute() else config.rootpath / value
    cache = getattr(config, "cache", None)
    return Path(cache._cachedir, "d", XLA_DIR) if cache is not None else None


@dataclass(frozen=True)
class MarkerSpec:
    """The arguments of `@pytest.mark.parity(devices=..., dtypes=..., rtol=..., atol=...,
    verdict=...)`."""

    devices: tuple[str, ...] | None = None
    dtypes: tuple[str, ...] | None = None
    rtol: float | Mapping[str, float] | None = None
    atol: float | Mapping[str, float] | None = None
    verdict: Verdict | Mapping[str, Verdict] | None = None

    def layer(self) -> Layer:
        return ("marker", self.rtol, self.atol)


def case_verdict(run: Verdict, spec: MarkerSpec) -> Verdict | Mapping[str, Verdict]:
    """The case's verdict: the command line's (or ini's) where it chose one, else the
    marker's, else auto."""
    return run if run != "auto" or spec.verdict is None else spec.verdict


def _shown(value: Any) -> str:
    """repr(value), cut to a line; some reprs fail (an int of 5000 digits) or fill a screen."""
    try:
        text = repr(value)
    except Exception:  # any object may be given; its repr is no concern of the marker's
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= 80 else f"{text[:77]}..."


def _names(value: Any, allowed: tuple[str, ...], argument: str) -> tuple[str, ...]:
    # A list, not any iterable: a generator would be consumed by the first read, and the
    # marker is read again when the test runs.
    if isinstance(value, str):
        names: tuple[Any, ...] = (value,)
    elif isinstance(value, (list, tuple, set, frozenset)):
        names = tuple(value)
    else:
        names = ()
    unknown = [name for name in names if not isinstance(name, str) or name not in allowed]
    if unknown or not names:
        raise ValueError(f"parity marker: {argument}={_shown(value)}; each must be one of "
                         f"{', '.join(allowed)}, e.g. {argument}=[{allowed[0]!r}] (a list)")
    return names


def _number(value: Any) -> float | None:
    """The value as a finite float >= 0, or None (a bool, a string, nan, inf, 10**400...)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _tolerance(value: Any, argument: str) -> float | dict[str, float] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        given = dict(value)
        unknown = [key for key in given
                   if not isinstance(key, str) or key not in options.DTYPE_CHOICES]
        if unknown:
            raise ValueError(f"parity marker: {argument}={_shown(value)}; {_shown(unknown[0])} "
                             "is not a "
                             f"dtype: each key must be one of {', '.join(options.DTYPE_CHOICES)},"
                             f" e.g. {argument}={{'bfloat16': 1e-2}}")
        by_dtype = {key: _number(number) for key, number in given.items()}
        bad = next((key for key, number in by_dtype.items() if number is None), None)
        if bad is not None:
            raise ValueError(f"parity marker: {argument}={_shown(value)}; {argument}[{bad!r}] "
                             f"must be a finite number >= 0, e.g. {argument}={{{bad!r}: 1e-5}}")
        return {key: number for key, number in by_dtype.items() if number is not None}
    number = _number(value)
    if number is None:
        raise ValueError(f"parity marker: {argument}={_shown(value)}; expected a finite "
                         f"number >= 0 or {{dtype: number}}, e.g. {argument}=1e-5")
    return number


def _verdict(value: Any) -> Verdict | dict[str, Verdict] | None:
    if value is None:
        return None
    choices = options.VERDICT_CHOICES
    if isinstance(value, Mapping):
        given = dict(value)
        bad = next((key for key, verdict in given.items()
                    if not isinstance(key, str) or key not in options.DTYPE_CHOICES
                    or not isinstance(verdict, str) or verdict not in choices), None)
        if bad is not None or not given:
            raise ValueError(f"parity marker: verdict={_shown(value)}; expected {{dtype: one "
                             f"of {', '.join(choices)}}}, e.g. verdict={{'bfloat16': 'fixed'}}")
        return given
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"parity marker: verdict={_shown(value)}; expected one of "
                         f"{', '.join(choices)} or {{dtype: one of them}}, e.g. "
                         "verdict='fixed'")
    return value


def read_marker(marker: pytest.Mark | None) -> MarkerSpec:
    """The marker's arguments, validated.

    Raises:
        ValueError: positional or unknown arguments, or a value that is not allowed.
    """
    if marker is None:
        return MarkerSpec()
    unknown = sorted(set(marker.kwargs) - {"devices", "dtypes", "rtol", "atol", "verdict"})
    if marker.args or unknown:
        raise ValueError(f"parity marker takes only keyword arguments devices, dtypes, rtol, "
                         f"atol, verdict; got {_shown(list(marker.args) + unknown)}")
    devices, dtypes = marker.kwargs.get("devices"), marker.kwargs.get("dtypes")
    return MarkerSpec(
        devices=None if devices is None else _names(devices, MARKER_DEVICES, "devices"),
        dtypes=None if dtypes is None else _names(dtypes, options.DTYPE_CHOICES, "dtypes"),
        rtol=_tolerance(marker.kwargs.get("rtol"), "rtol"),
        atol=_tolerance(marker.kwargs.get("atol"), "atol"),
        verdict=_verdict(marker.kwargs.get("verdict")),
    )


def case_params(run_devices: list[str], run_dtypes: tuple[str, ...], spec: MarkerSpec,
                argnames: Sequence[str]) -> list[Any]:
    """The parameter sets of a test over `argnames` (parity_device and/or parity_dtype)."""
    axes = {
        "parity_device": ("devices", run_devices, spec.devices, "--parity-device"),
        "parity_dtype": ("dtypes", list(run_dtypes), spec.dtypes, "--parity-dtype"),
    }
    values: list[list[str]] = []
    for argname in argnames:
        what, run, allowed, option = axes[argname]
        kept = [value for value in run if allowed is None or value in allowed]
        if not kept:
            reason = (f"the parity marker allows {what} {list(allowed or [])}; this run "
                      f"selects {run} ({option})")
            return [pytest.param(*[None] * len(argnames), id="none",
                                 marks=pytest.mark.skip(reason=reason))]
        values.append(kept)
    combos: list[tuple[str, ...]] = [()]
    for kept in values:
        combos = [(*combo, value) for combo in combos for value in kept]
    return [pytest.param(*combo, id="-".join(combo)) for combo in combos]
