"""Flax variables on disk in flax.serialization's msgpack format (no code, only arrays)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_parity.atomic import write_atomically
from pytest_parity.errors import CheckpointError


def read_variables(path: str | Path) -> dict[str, Any]:
    """Nested Flax variables from a .msgpack file.

    Raises:
        CheckpointError: missing, or not a msgpack file of nested arrays.
    """
    from flax.serialization import msgpack_restore

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, ["no such file"])
    try:
        variables = msgpack_restore(path.read_bytes())
    except Exception as error:  # msgpack raises several types on a corrupt file
        raise CheckpointError(path, [f"not a Flax msgpack file ({type(error).__name__})"]
                              ) from None
    if not isinstance(variables, dict):
        raise CheckpointError(path, [f"holds a {type(variables).__name__}, not Flax variables"])
    return variables


def write_variables(path: str | Path, variables: dict[str, Any], *,
                    overwrite: bool = False) -> Path:
    """Write nested Flax variables as msgpack, atomically and without clobbering."""
    from flax.serialization import msgpack_serialize

    data = msgpack_serialize(variables)
    return write_atomically(path, lambda temporary: temporary.write_bytes(data),
                            overwrite=overwrite)
