"""Flax variables on disk in flax.serialization's msgpack format (no code, only arrays).

Two trees: Linen variables (`.msgpack`: {'params': {...}, 'batch_stats': {...}}), and an NNX
module's state (`.nnx.msgpack`: `nnx.to_pure_dict(nnx.state(model))`, one tree of attribute
names and list indices, no collection level: what Flax's NNX checkpointing guide saves, and
what `nnx.replace_by_pure_dict(nnx.state(model), tree)` + `nnx.update(model, state)` load;
the variable types come from the model it is loaded into, so the file holds arrays only).
"""

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


def _name_problem(key: object, nnx_state: bool) -> bool:
    if nnx_state and isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return False  # a list index
    return not isinstance(key, str) or not key or "/" in key


def _structure_problems(variables: dict[object, object], nnx_state: bool = False) -> list[str]:
    """What makes nested Flax variables unusable, each naming its path: a top-level value that
    is not a collection (Linen variables), a name that is not a string (or holds '/'; an NNX
    state also has list indices), a leaf that is not a numeric array, nesting deeper than
    MAX_DEPTH. Walked without recursion."""
    problems: list[str] = []
    pending: list[tuple[str, dict[object, object], int]] = [("", variables, 1)]
    while pending:
        prefix, node, depth = pending.pop()
        for key, value in node.items():
            name = f"{prefix}{key}"
            if _name_problem(key, nnx_state):
                what = "string or list index" if nnx_state else "string"
                problems.append(f"{prefix}{repr(key)[:60]}: a name must be a non-empty {what} "
                                "without '/'")
            elif isinstance(value, dict) and depth >= MAX_DEPTH:
                problems.append(f"{name}: nested more than {MAX_DEPTH} levels deep")
            elif isinstance(value, dict):
                pending.append((f"{name}/", value, depth + 1))
            elif depth == 1 and not nnx_state:
                problems.append(f"{name}: a {type(value).__name__} where a collection of "
                                "variables (e.g. 'params': {...}) was expected")
            elif _leaf_problem(value):
                problems.append(f"{name}: {_leaf_problem(value)}")
    problems.sort(key=str)
    if len(problems) > MAX_PROBLEMS:
        problems[MAX_PROBLEMS:] = [f"... and {len(problems) - MAX_PROBLEMS} more"]
    return problems


def read_variables(path: str | Path, *, nnx_state: bool = False) -> dict[Any, Any]:
    """Nested Flax variables from a .msgpack file (an NNX state's pure dict: `nnx_state`).

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
    problems = _structure_problems(variables, nnx_state)
    if problems:
        raise CheckpointError(path, problems)
    return variables


def write_variables(path: str | Path, variables: dict[Any, Any], *,
                    overwrite: bool = False) -> Path:
    """Write nested Flax variables (or an NNX state's pure dict) as msgpack, atomically and
    without clobbering."""
    from flax.serialization import msgpack_serialize

    data = msgpack_serialize(variables)
    return write_atomically(path, lambda temporary: temporary.write_bytes(data),
                            overwrite=overwrite)


def nnx_state_of(variables: dict[str, Any]) -> dict[Any, Any]:
    """Linen-style variables as an NNX state's pure dict: the collections merged into one
    tree, path parts that are digits as list indices (`nnx.List` entries)."""
    tree: dict[Any, Any] = {}
    pending = [(tree, node) for node in variables.values()]
    while pending:
        target, node = pending.pop()
        for key, value in node.items():
            name = int(key) if key.isdigit() else key
            if isinstance(value, dict):
                pending.append((target.setdefault(name, {}), value))
            else:
                target[name] = value
    return tree


def nnx_state_paths(state: dict[Any, Any]) -> dict[str, Any]:
    """An NNX state's pure dict flat, by '/'-joined path (list indices as digits)."""
    flat: dict[str, Any] = {}
    pending: list[tuple[str, dict[Any, Any]]] = [("", state)]
    while pending:
        prefix, node = pending.pop()
        for key, value in node.items():
            if isinstance(value, dict):
                pending.append((f"{prefix}{key}/", value))
            else:
                flat[f"{prefix}{key}"] = value
    return flat
