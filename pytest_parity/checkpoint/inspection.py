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


def diff_lines(a: Checkpoint, b: Checkpoint) -> tuple[list[str], bool]:
    """Per-tensor max abs difference and the keys only one side has; and whether they differ."""
    lines = [f"missing in B: {name}" for name in sorted(a.arrays.keys() - b.arrays.keys())]
    lines += [f"extra in B: {name}" for name in sorted(b.arrays.keys() - a.arrays.keys())]
    differ = bool(lines)
    for name in sorted(a.arrays.keys() & b.arrays.keys()):
        left, right = a.arrays[name], b.arrays[name]
        if left.shape != right.shape or left.dtype != right.dtype:
            lines.append(f"{name}: {list(left.shape)} {left.dtype} vs "
                         f"{list(right.shape)} {right.dtype}")
            differ = True
            continue
        equal = left.tobytes() == right.tobytes()
        max_abs = float(np.max(np.abs(left.astype(np.float64) - right.astype(np.float64)),
                               initial=0.0))
        lines.append(f"{name}: max abs difference {max_abs:.3e}" + ("" if equal else "  DIFFERS"))
        differ = differ or not equal
    lines.append("checkpoints differ" if differ else "checkpoints are identical")
    return lines, differ
