"""A canonical checkpoint written tensor by tensor: a model too large to hold in memory.

`save_tensors` takes the tensors one at a time from an iterable (a generator drawing or
converting each in turn) and writes each before it asks for the next, so that no more than
one tensor is held at once, besides what the iterable itself keeps. It writes the same file
as format.save of the same tensors: the same root attributes, manifest and content digest
(each tensor hashed as it is written, only its shape, dtype and sha256 kept; the digest
combined at the end, in name order, as digest.py defines it). The write is atomic, as
format.save's: a temporary file beside the target, linked into place only once complete; an
iterable that raises midway, or a tensor that cannot be written, leaves no file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np

from pytest_parity.atomic import write_atomically
from pytest_parity.checkpoint.digest import TensorSummary, combine_digests, tensor_digest
from pytest_parity.checkpoint.format import (
    architecture_problems,
    tensor_problems,
    write_footer,
    write_header,
    write_tensor,
)
from pytest_parity.errors import CheckpointError
from pytest_parity.threads import submit

Tensors = Iterable[tuple[str, np.ndarray, str]]  # (canonical path, array, layout)


class _Written:
    """The paths written so far (and the groups they make), to refuse a second tensor at a
    path, or a tensor where a group is, as each one comes."""

    def __init__(self) -> None:
        self.summaries: dict[str, TensorSummary] = {}
        self.digests: dict[str, bytes] = {}
        self.groups: set[str] = set()

    def problems(self, name: str, layout: object) -> list[str]:
        parents = ["/".join(name.split("/")[:depth]) for depth in range(1, name.count("/") + 1)]
        problems = []
        if not isinstance(layout, str) or not layout:
            problems.append(f"{name}: no layout declared (e.g. 'HWIO', 'IO', 'C', 'scalar')")
        if name in self.summaries:
            problems.append(f"{name}: given twice")
        if name in self.groups or any(parent in self.summaries for parent in parents):
            problems.append(f"{name}: is both a tensor and a group of tensors")
        return problems

    def add(self, name: str, array: np.ndarray, digest: bytes) -> None:
        self.summaries[name] = TensorSummary(tuple(array.shape), array.dtype)
        self.digests[name] = digest
        self.groups.update("/".join(name.split("/")[:depth])
                           for depth in range(1, name.count("/") + 1))


def _write_stream(path: Path, target: Path, architecture: str, tensors: Tensors, source: str,
                  written_by: dict[str, str]) -> None:
    written = _Written()
    problems: list[str] = []
    manifest: dict[str, dict[str, str]] = {}
    with h5py.File(path, "w") as h5:
        groups = write_header(h5, architecture, source, written_by)
        for name, given, layout in tensors:
            array = np.asarray(given)
            del given
            found = tensor_problems(name, array) + written.problems(name, layout)
            if found:
                problems.extend(found)  # every problem listed: the others are still checked
                continue
            hashing = submit(tensor_digest, array)  # hashes while h5py writes
            manifest[name] = write_tensor(groups, name, array, layout)
            written.add(name, array, hashing.result())
            del array, hashing  # the next tensor is drawn with this one released
        if problems:
            raise CheckpointError(target, problems)
        write_footer(h5, dict(sorted(manifest.items())),
                     combine_digests(written.summaries, written.digests))


def save_tensors(path: str | Path, architecture: str, tensors: Tensors, *, source: str,
                 overwrite: bool = False, written_by: dict[str, str] | None = None) -> Path:
    """Write the canonical checkpoint of `tensors`, (canonical path, array, layout) triples
    taken one at a time, atomically; an existing file is replaced only with overwrite=True.

    Tensors may come in any order; the manifest and digest are format.save's (sorted by
    path), so the file loads with `load` and its digest equals that of format.save of the
    same arrays.

    Raises:
        CheckpointError: the architecture, a path, a dtype or a layout is not writable (every
            such problem listed once the iterable is spent), or the file exists.
        WriteError: the file cannot be written.
        Whatever the iterable raises; in every case no file is left.
    """
    target = Path(path)
    problems = architecture_problems(architecture)
    if problems:
        raise CheckpointError(target, problems)
    return write_atomically(target, lambda temporary: _write_stream(
        temporary, target, architecture, tensors, source, written_by or {}),
        overwrite=overwrite)
