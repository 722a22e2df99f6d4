"""Versions and devices of the frameworks: printed first by every nox session (`parity env`),
recorded in the parity report and in every checkpoint written."""

from __future__ import annotations

import platform
from importlib import metadata

_VERSIONED = ("torch", "torchvision", "jax", "jaxlib", "flax", "numpy", "h5py", "pytest-parity")


def installed_versions() -> dict[str, str | None]:
    """Versions of the frameworks, read from package metadata (nothing is imported)."""
    versions: dict[str, str | None] = {}
    for distribution in _VERSIONED:
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[distribution] = None
    return versions


def _torch_lines() -> list[str]:
    try:
        import torch
    except ImportError:
        return ["torch: not installed"]
    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})"
                         for i in range(torch.cuda.device_count())]
    lines = [f"torch {torch.__version__}: devices {', '.join(devices)}"]
    from pytest_parity.torchvision_compat import import_torchvision, workaround_applied

    try:
        torchvision = import_torchvision()
    except ImportError:
        torchvision = None
    if torchvision is None:
        lines.append("torchvision: not installed")
    else:
        note = " (op schemas defined by pytest_parity.torchvision_compat)"
        lines.append(f"torchvision {torchvision.__version__}{note if workaround_applied() else ''}")
    return lines


def _jax_lines() -> list[str]:
    try:
        import jax
    except ImportError:
        return ["jax: not installed"]
    devices = ", ".join(f"{d.platform}:{d.id} ({d.device_kind})" for d in jax.devices())
    lines = [f"jax {jax.__version__}: default backend {jax.default_backend()}, devices {devices}"]
    try:
        lines.append(f"flax {metadata.version('flax')}")
    except metadata.PackageNotFoundError:
        lines.append("flax: not installed")
    return lines


def describe() -> str:
    """Python, numpy, h5py, torch (+torchvision) and jax (+flax) versions, with their devices."""
    lines = [f"python {platform.python_version()} on {platform.machine()}"]
    for distribution in ("pytest-parity", "numpy", "h5py", "ml_dtypes"):
        try:
            lines.append(f"{distribution} {metadata.version(distribution)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{distribution}: not installed")
    return "\n".join(lines + _torch_lines() + _jax_lines())
