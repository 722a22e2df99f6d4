"""Which devices the frameworks see; imports torch and jax only when asked about a GPU."""

from __future__ import annotations

from functools import cache


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
