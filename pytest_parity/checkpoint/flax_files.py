"""Flax variables on disk in flax.serialization's msgpack format (no code, only arrays)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pytest_parity.atomic import write_atomically
from pytest_parity.errors import CheckpointError

# Flax variables nest a collection, then a module path (a few levels; ~10 in a large model).
# Far past it the file is not variables, and walking it would exhaust Python's stack.
MAX_DEPTH = 64
MAX_PROBLEMS = 20  # listed of a file that is wrong everywhere, with a count of the rest


def _leaf_problem(value: object) -> str:
    if not isinstance(value, (np.ndarray, np.generic)):
        return f"a value of type {type(value).__name__}, not an array"
    if value.dtype.kind not in "biufc" and str(value.dtype) != "bfloat16":
        return f"an array of dtype {value.dtype}, not of numbers"
    return ""


def _structure_problems(variables: dict[object, object]) -> list[str]:
    """What makes nested Flax variables unusable, each naming its path: a top-level value that
    is not a collection, a name that is not a string (or holds '/'), a leaf that is not a
    numeric array, nesting deeper than MAX_DEPTH. Walked without recursion."""
    problems: list[str] = []
    pending: list[tuple[str, dict[object, object], int]] = [("", variables, 1)]
    while pending:
        prefix, node, depth = pending.pop()
        for key, value in node.items():
            name = f"{prefix}{key}"
            if not isinstance(key, str) or not key or "/" in key:
                problems.append(f"{prefix}{repr(key)[:60]}: a name must be a non-empty string "
                                "without '/'")
            elif isinstance(value, dict) and depth >= MAX_DEPTH:
                problems.append(f"{name}: nested more than {MAX_DEPTH} levels deep")
            elif isinstance(value, dict):
                pending.append((f"{name}/", value, depth + 1))
            elif depth == 1:
                problems.append(f"{name}: a {type(value).__name__} where a collection of "
                                "variables (e.g. 'params': {...}) was expected")
            elif _leaf_problem(value):
                problems.append(f"{name}: {_leaf_problem(value)}")
    problems.sort()
    if len(problems) > MAX_PROBLEMS:
        problems[MAX_PROBLEMS:] = [f"... and {len(problems) - MAX_PROBLEMS} more"]
    return problems


def read_variables(path: str | Path) -> dict[str, Any]:
    """Nested Flax variables from a .msgpack file.

    Raises:
        CheckpointError: missing, or not a msgpack file of nested arrays (every misplaced
            value, odd name and non-numeric leaf named).
    """
    from flax.serialization import msgpack_restore

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, ["no such file"])
    try:
        variables = msgpack_restore(path.read_bytes())
    except Exception as error:  # msgpack raises several types on a corrupt file
        detail = (str(error).splitlines() or [""])[0][:100]
        raise CheckpointError(path, [f"not a Flax msgpack file ({type(error).__name__}"
                                     f"{': ' + detail if detail else ''})"]) from None
    if not isinstance(variables, dict):
        raise CheckpointError(path, [f"holds a {type(variables).__name__}, not Flax variables"])
    problems = _structure_problems(variables)
    if problems:
        raise CheckpointError(path, problems)
    return variables


def write_variables(path: str | Path, variables: dict[str, Any], *,
                    overwrite: bool = False) -> Path:
    """Write nested Flax variables as msgpack, atomically and without clobbering."""
    from flax.serialization import msgpack_serialize

    data = msgpack_serialize(variables)
    return write_atomically(path, lambda temporary: temporary.write_bytes(data),
                            overwrite=overwrite)
