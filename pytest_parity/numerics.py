"""Reproducible numerics for each parity case, and what they were (for the report).

`pinned` (the default): jax matmuls at precision "highest", torch's TF32 off for matmuls and
convolutions (TF32 alone makes ~1e-3 disagreements on Ampere and later GPUs), float32 matmul
precision "highest", cuDNN deterministic without autotuning, and torch's deterministic
algorithms where they exist (warn only where they do not). `default` leaves every framework
default alone, to test the fast settings users actually run with.

Both modes seed torch's global generator with the case's seed (`--parity-seed`), so a layer
built inside a test gets the same initial weights on every run. Settings and the generators'
states are restored after the case. Frameworks are touched only if installed; importing this
module imports neither. Nothing is set outside parity cases (see `process_applied` for
cuBLAS's environment variable).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from importlib.util import find_spec
from typing import Any

PINNED = {
    "jax_default_matmul_precision": "highest",
    "torch_allow_tf32": False,
    "torch_float32_matmul_precision": "highest",
    "torch_cudnn_deterministic": True,
    "torch_cudnn_benchmark": False,
    "torch_deterministic_algorithms": "on (warn only)",
}


def describe(mode: str, seed: int) -> dict[str, Any]:
    """The settings a case runs with, as the report records them."""
    settings: dict[str, Any] = {"mode": mode, "torch_seed": seed}
    if mode == "pinned":
        settings.update(PINNED)
    return settings


@contextmanager
def process_applied(mode: str) -> Iterator[None]:
    """Around a parity case: in pinned mode, cuBLAS's deterministic workspace
    (CUBLAS_WORKSPACE_CONFIG=:4096:8) unless the user set the variable (theirs is kept); the
    variable is removed again after the case. cuBLAS reads it when it first starts on a device,
    so it takes only where that happens in a parity case, and stays in force after it there."""
    if mode != "pinned" or "CUBLAS_WORKSPACE_CONFIG" in os.environ:
        yield
        return
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    try:
        yield
    finally:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def _deterministic_algorithms(torch: Any, on: bool, warn_only: bool) -> None:
    """`torch.use_deterministic_algorithms` without its first-call cost: it imports
    `torch._inductor.config` (about 1 s: the compiler stack) only to set one flag there, which
    matters only to code that compiles, and such code has imported it already."""
    inductor_config: Any = sys.modules.get("torch._inductor.config")
    if inductor_config is not None:
        inductor_config.deterministic = on
    torch._C._set_deterministic_algorithms(on, warn_only=warn_only)


@contextmanager
def _pinned_torch(seed: int, pinned: bool) -> Iterator[None]:
    import torch

    backends = torch.backends
    saved = (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision(), backends.cudnn.deterministic,
             backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())
    # The case is seeded; what follows it draws on as if it had not run.
    generators = (torch.random.get_rng_state(),
                  torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None)
    torch.manual_seed(seed)
    if pinned:
        backends.cuda.matmul.allow_tf32 = backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        backends.cudnn.deterministic, backends.cudnn.benchmark = True, False
        _deterministic_algorithms(torch, True, warn_only=True)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[2])  # first: it sets allow_tf32 too
        (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32, _,
         backends.cudnn.deterministic, backends.cudnn.benchmark, deterministic,
         warn_only) = saved
        _deterministic_algorithms(torch, deterministic, warn_only=warn_only)
        torch.random.set_rng_state(generators[0])
        if generators[1] is not None:
            torch.cuda.set_rng_state_all(generators[1])


@contextmanager
def applied(mode: str, seed: int) -> Iterator[dict[str, Any]]:
    """Run the block under the mode's settings; yields their description."""
    with ExitStack() as stack:
        if find_spec("torch") is not None:
            stack.enter_context(_pinned_torch(seed, pinned=mode == "pinned"))
        if mode == "pinned" and find_spec("jax") is not None:
            import jax

            stack.enter_context(jax.default_matmul_precision("highest"))
        yield describe(mode, seed)
