"""Which devices the frameworks see; imports torch and jax only when asked about a GPU."""

from __future__ import annotations

from functools import cache
from importlib.util import find_spec

INSTALL_HINT = {"torch": "pip install 'pytest-parity[torch]'",
                "jax": "pip install 'pytest-parity[jax]'"}


@cache
def torch_gpu_problem() -> str | None:
    """Why torch cannot run on a GPU here, or None if it can."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no GPU (torch.cuda.is_available() is False)"
    return None


@cache
def jax_gpu_problem() -> str | None:
    """Why jax cannot run on a GPU here, or None if it can."""
    try:
        import jax
    except ImportError:
        return "jax is not installed"
    try:
        jax.devices("gpu")
    except RuntimeError:
        return f"jax {jax.__version__} sees no GPU (its devices: {jax.devices()})"
    return None


def gpu_problems() -> list[str]:
    """What stops a GPU parity case here; empty when both frameworks see a GPU."""
    return [problem for problem in (torch_gpu_problem(), jax_gpu_problem()) if problem]


def missing_frameworks() -> list[str]:
    """Why a parity case cannot run at all here: torch or jax not installed (nothing imported)."""
    return [f"{name} is not installed ({hint})" for name, hint in INSTALL_HINT.items()
            if find_spec(name) is None]


def dtype_problem(device: str, dtype: str) -> str | None:
    """Why `dtype` cannot run on `device` here, or None if it can (bfloat16 needs a GPU of
    compute capability 8.0 or later in torch)."""
    if device == "gpu" and dtype == "bfloat16":
        import torch

        if not torch.cuda.is_bf16_supported(including_emulation=False):
            major, minor = torch.cuda.get_device_capability()
            return (f"torch: bfloat16 is not supported on {torch.cuda.get_device_name()} "
                    f"(compute capability {major}.{minor} < 8.0)")
    return None


def resolve_devices(requested: str) -> list[str]:
    """The devices a `--parity-device` value expands to.

    Raises:
        RuntimeError: 'gpu' was requested and a framework sees no GPU.
    """
    if requested == "cpu":
        return ["cpu"]
    if requested == "all":
        return ["cpu", "gpu"]
    problems = gpu_problems()
    if requested == "auto":
        return ["cpu"] if problems else ["gpu"]
    if problems:
        raise RuntimeError(
            "--parity-device=gpu cannot run here: " + "; ".join(problems)
            + ". Use --parity-device=cpu, or --parity-device=all to skip the GPU cases."
        )
    return ["gpu"]


def torch_device(device: str) -> str:
    """The torch device string for a parity device name."""
    return {"cpu": "cpu", "gpu": "cuda"}[device]


def jax_device(device: str):  # -> jax.Device, untyped to keep jax out of the import
    """The first jax device of a parity device name."""
    import jax

    return jax.devices(device)[0]
