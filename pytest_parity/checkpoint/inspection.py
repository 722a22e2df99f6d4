"""Human-readable views of canonical checkpoints: the tree, the flat key list, a diff."""

from __future__ import annotations

import numpy as np

from pytest_parity.checkpoint.format import Checkpoint


def _size(n_bytes: int) -> str:
    if n_bytes < 1024:
        return f"{n_bytes} B"
    scaled = float(n_bytes)
    for unit in ("KiB", "MiB", "GiB"):
        scaled /= 1024
        if scaled < 1024 or unit == "GiB":
            break
    return f"{scaled:.1f} {unit}"


def list_keys(checkpoint: Checkpoint) -> list[str]:
    """One line per tensor: canonical path, shape, dtype (as get_checkpoint_vars scripts do)."""
    return [f"{name} {list(checkpoint.arrays[name].shape)} {checkpoint.arrays[name].dtype}"
            for name in sorted(checkpoint.arrays)]


def describe_tree(checkpoint: Checkpoint) -> list[str]:
    """The group tree with each tensor's shape, dtype and layout, then the totals."""
    lines = [f"{checkpoint.architecture}  (source: {checkpoint.source}, "
             f"digest {checkpoint.digest()[:12]})"]
    shown_groups: set[str] = set()
    for name in sorted(checkpoint.arrays):
        parts = name.split("/")
        for depth in range(1, len(parts)):
            group = "/".join(parts[:depth])
            if group not in shown_groups:
                shown_groups.add(group)
                lines.append(f"{'  ' * depth}{parts[depth - 1]}/")
        array = checkpoint.arrays[name]
        lines.append(f"{'  ' * len(parts)}{parts[-1]}  {list(array.shape)} {array.dtype} "
                     f"{checkpoint.layouts.get(name, '?')}")
    n_values = sum(int(a.size) for a in checkpoint.arrays.values())
    n_bytes = sum(int(a.nbytes) for a in checkpoint.arrays.values())
    lines.append(f"{len(checkpoint.arrays)} tensors, {n_values:,} values, {_size(n_bytes)}")
    return lines


def _tensor_difference(name: str, a: Checkpoint, b: Checkpoint) -> list[str]:
    """What differs in one tensor both sides hold: shape, dtype, layout, values; [] if none."""
    left, right = a.arrays[name], b.arrays[name]
    found = []
    if left.shape != right.shape or left.dtype != right.dtype:
        found.append(f"{name}: {list(left.shape)} {left.dtype} vs "
                     f"{list(right.shape)} {right.dtype}")
    elif np.ascontiguousarray(left).tobytes() != np.ascontiguousarray(right).tobytes():
        max_abs = float(np.max(np.abs(left.astype(np.float64) - right.astype(np.float64)),
                               initial=0.0))
        # Equal numbers with other bits (-0.0 and 0.0, NaNs) still differ: a copy is exact.
        found.append(f"{name}: max abs difference {max_abs:.3e}"
                     + ("" if max_abs else " (the bits differ)"))
    layouts = a.layouts.get(name, "?"), b.layouts.get(name, "?")
    if layouts[0] != layouts[1]:
        found.append(f"{name}: layout {layouts[0]} vs {layouts[1]}")
    return found


def diff_lines(a: Checkpoint, b: Checkpoint) -> tuple[list[str], bool]:
    """Only what differs (architecture, keys one side lacks, each tensor's shape, dtype,
    layout or max abs difference), a count of the tensors, a verdict; and whether they differ."""
    lines = [f"architecture: {a.architecture!r} vs {b.architecture!r}"] \
        if a.architecture != b.architecture else []
    lines += [f"missing in B: {name}" for name in sorted(a.arrays.keys() - b.arrays.keys())]
    lines += [f"extra in B: {name}" for name in sorted(b.arrays.keys() - a.arrays.keys())]
    shared = sorted(a.arrays.keys() & b.arrays.keys())
    differing = [found for found in (_tensor_difference(name, a, b) for name in shared) if found]
    lines += [line for found in differing for line in found]
    total = len(a.arrays.keys() | b.arrays.keys())
    identical = len(shared) - len(differing)
    differ = bool(lines)
    lines.append(f"{total - identical} of {total} tensors differ; {identical} identical")
    lines.append("checkpoints differ" if differ else "checkpoints are identical")
    return lines, differ
