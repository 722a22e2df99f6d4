"""Parse the plugin's option values at the door, so a bad value fails before any test runs."""

from __future__ import annotations

import argparse

DEVICE_CHOICES = ("cpu", "gpu", "all", "auto")


def parse_device(value: str) -> str:
    """`--parity-device`: one of cpu, gpu, all, auto."""
    device = value.strip().lower()
    if device not in DEVICE_CHOICES:
        raise argparse.ArgumentTypeError(
            f"Could not parse value: {value!r}. Expected one of {', '.join(DEVICE_CHOICES)}, "
            "e.g. '--parity-device=cpu'."
        )
    return device
