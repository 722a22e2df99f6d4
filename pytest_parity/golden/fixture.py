"""The `parity_golden` fixture: outputs held to golden files with pytest-regressions' review
semantics.

`parity_golden.check(outputs, name=...)` compares against `<golden dir>/<name>.npz` (+ `.json`
manifest, see pytest_parity.golden.files):
- a missing file (or output key) is written and the test fails, so a person reviews it;
- a mismatch fails with the parity report and saves the obtained outputs beside the expected
  ones (`<name>.obtained.npz`);
- `--parity-update-golden` rewrites a mismatching file and still fails, for review;
- under `CI=true` nothing is ever written.
Writes hold a lock on the golden file and rename into place: xdist workers writing the same
file (other keys) merge instead of losing each other's outputs. A golden file that cannot be
read, locked or written fails the test with a `[parity]` message naming the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_parity.arrays import to_numpy
from pytest_parity.atomic import write_atomically
from pytest_parity.compare import Comparison, assert_close, leaves
from pytest_parity.errors import PREFIX, ParityError
from pytest_parity.golden import files as golden_files
from pytest_parity.golden.lock import locked

UPDATE_FLAG = "--parity-update-golden"
UPDATE_HINT = f"If the new outputs are right: rerun with {UPDATE_FLAG} and review the diff."


def default_name(nodeid: str) -> str:
    """A file name from a test id: `tests/test_x.py::test_y[cpu-float32]` ->
    `test_x-test_y-cpu-float32`."""
    path, _, rest = nodeid.partition("::")
    return re.sub(r"[^A-Za-z0-9_.]+", "-", f"{Path(path).stem}-{rest}").strip("-")


def as_arrays(outputs: Any) -> dict[str, np.ndarray]:
    """Outputs (an array or a tree of them) as named numpy arrays; a single array is 'output'."""
    return {path or "output": to_numpy(leaf) for path, leaf in leaves(outputs).items()}


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with path.open("wb") as stream:  # a stream: given a path, np.savez appends ".npz"
        np.savez(stream, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle


class GoldenFixture:
    def __init__(self, directory: Path, nodeid: str, update: bool, context: Mapping[str, Any]):
        self.directory = directory
        self.nodeid = nodeid
        self.update = update
        self.context = dict(context)  # device, dtype, seed of the case, for the manifest
        self.in_ci = os.environ.get("CI") == "true"

    def read(self, name: str) -> golden_files.Golden:
        """The golden outputs and manifest of `name` (fails the test if missing or altered)."""
        __tracebackhide__ = True
        try:
            return golden_files.read(self.directory, name)
        except ParityError as error:  # the message alone: no chained exception shown
            raise pytest.fail.Exception(str(error), pytrace=False) from None

    def check(self, outputs: Any, *, name: str | None = None,
              manifest: Mapping[str, Any] | None = None, rtol: float | None = None,
              atol: float | None = None, mask: Any = None) -> Comparison:
        """Hold `outputs` to the golden file `name` (default: from the test id).

        `manifest` adds provenance to what is written (source, checkpoint, per-output input
        descriptions); where it gives a checkpoint digest or input digests, goldens computed
        from other ones fail as such (not as a parity failure).
        """
        __tracebackhide__ = True
        try:
            return self._check(outputs, name or default_name(self.nodeid), manifest,
                               rtol=rtol, atol=atol, mask=mask)
        except ParityError as error:  # a golden file unreadable, unlockable or unwritable
            raise pytest.fail.Exception(str(error), pytrace=False) from None

    def _check(self, outputs: Any, name: str, manifest: Mapping[str, Any] | None, *,
               rtol: float | None, atol: float | None, mask: Any) -> Comparison:
        __tracebackhide__ = True
        obtained = as_arrays(outputs)
        arrays_path, _ = golden_files.paths(self.directory, name)
        stored = self._stored(name)
        missing = [key for key in obtained if stored is None or key not in stored.outputs]
        if missing:
            written = self._write(name, obtained, manifest)
            pytest.fail(f"{PREFIX} {arrays_path}: no golden outputs {missing} for "
                        f"{self.nodeid}; " + ("written now: review and commit them" if written
                                              else "not written under CI=true; write them on a "
                                              "workstation and commit them"), pytrace=False)
        assert stored is not None
        self._check_provenance(stored, name, obtained, manifest)
        expected = {key: stored.outputs[key] for key in obtained}
        try:
            return assert_close(obtained, expected, rtol=rtol, atol=atol, mask=mask,
                                name=f"{name} vs golden")
        except AssertionError as failure:  # its report, not "During handling of ..." after it
            raise pytest.fail.Exception(
                f"{failure}\n{self._after_mismatch(name, obtained, manifest)}",
                pytrace=False) from None

    def _after_mismatch(self, name: str, obtained: dict[str, np.ndarray],
                        manifest: Mapping[str, Any] | None) -> str:
        """Rewrite (with the update flag) or save the obtained outputs; say which."""
        arrays_path, _ = golden_files.paths(self.directory, name)
        if self.in_ci:
            return f"CI=true: nothing written. {UPDATE_HINT}"
        obtained_path = arrays_path.with_suffix(".obtained.npz")
        try:
            if self.update:
                self._write(name, obtained, manifest)
                return f"{arrays_path} rewritten ({UPDATE_FLAG}): review the diff and commit it."
            write_atomically(obtained_path, lambda tmp: _save_npz(tmp, obtained), overwrite=True)
        except ParityError as error:  # the mismatch above is still the news; then why not saved
            return f"Nothing written: {error.message}"
        return f"Obtained outputs saved to {obtained_path}. {UPDATE_HINT}"

    def _stored(self, name: str) -> golden_files.Golden | None:
        """The stored goldens, or None; read under the file's lock (never half-written)."""
        __tracebackhide__ = True
        if not self._exists(name):
            return None
        with locked(self.directory, name):
            return self.read(name)

    def _check_provenance(self, stored: golden_files.Golden, name: str,
                          obtained: dict[str, np.ndarray],
                          manifest: Mapping[str, Any] | None) -> None:
        """Fail if the goldens were computed from another checkpoint or other inputs (with the
        update flag: rewrite them from these, and fail for review)."""
        __tracebackhide__ = True
        if not manifest or "checkpoint" not in manifest:
            return
        inputs = {key: described["input_digest"] for key, described
                  in manifest.get("outputs", {}).items() if "input_digest" in described}
        problems = golden_files.provenance_problems(stored, manifest["checkpoint"]["digest"],
                                                    inputs)
        if not problems:
            return
        arrays_path, _ = golden_files.paths(self.directory, name)
        rewritten = self.update and self._write(name, obtained, manifest)
        pytest.fail(f"{PREFIX} {arrays_path}: the goldens belong to another checkpoint or "
                    f"other inputs (not a parity failure): {'; '.join(problems)}. "
                    + (f"Rewritten ({UPDATE_FLAG}): review the diff and commit it." if rewritten
                       else UPDATE_HINT), pytrace=False)

    def _write(self, name: str, obtained: dict[str, np.ndarray],
               manifest: Mapping[str, Any] | None) -> bool:
        """Merge `obtained` into the golden file (its other outputs kept), under its lock;
        False under CI=true, where nothing is written."""
        if self.in_ci:
            return False
        with locked(self.directory, name):
            current = golden_files.read(self.directory, name) if self._exists(name) else None
            document = dict(current.manifest) if current else {}
            document.update({"source": f"pytest-parity golden fixture: {self.nodeid}",
                             **self.context, **(manifest or {})})
            described = {**document.get("outputs", {}), **(manifest or {}).get("outputs", {})}
            outputs = {**(current.outputs if current else {}), **obtained}
            # shape, dtype and digest are golden.write's to fill in.
            document["outputs"] = {key: {k: v for k, v in described.get(key, {}).items()
                                         if k not in ("shape", "dtype", "digest")}
                                   for key in outputs}
            for key in ("format", "model"):
                document.pop(key, None)
            golden_files.write(self.directory, name, outputs, document, update=True)
        return True

    def _exists(self, name: str) -> bool:
        return any(os.path.lexists(path) for path in golden_files.paths(self.directory, name))
