"""A file's structure read first by a child process, so that a damaged HDF5 file that makes the
C library loop forever or crash (measured: tests/unit/test_checkpoint_reading.py) costs an error,
not the test run; a loop holds the GIL, so no thread could stop it."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from pytest_parity.checkpoint import reading

PROBE_SECONDS = 10.0  # ResNet-50's structure reads in ~20 ms; a loop is stopped after this
START_SECONDS = 120.0  # starting Python and importing h5py: ~0.2 s, far more on a busy machine


class _Prober:
    """One long-lived child (`python -I reading.py --probe`), restarted after it is stopped."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.process: subprocess.Popen[str] | None = None
        self.replies: queue.Queue[str | None] = queue.Queue()
        self.command = [sys.executable, "-I", reading.__file__, "--probe"]
        self.owner = os.getpid()

    def _start(self) -> subprocess.Popen[str]:
        environment = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True, env=environment)
        self.replies = queue.Queue()
        threading.Thread(target=self._pump, args=(process, self.replies), daemon=True).start()
        try:
            ready = self.replies.get(timeout=START_SECONDS)
        except queue.Empty:
            ready = None
        if ready != "ready":
            process.kill()
            process.wait()
            raise OSError(f"the probe process ({' '.join(self.command)}) did not start "
                          f"within {START_SECONDS:g} s")
        return process

    @staticmethod
    def _pump(process: subprocess.Popen[str], replies: queue.Queue[str | None]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            replies.put(line.strip())
        replies.put(None)  # the process ended

    def _stop(self) -> int | None:
        if self.process is None:
            return None
        self.process.kill()
        status = self.process.wait()
        self.process = None
        return status

    def check(self, path: Path, architecture: str | None) -> list[str]:
        with self.lock:
            if self.process is None or self.process.poll() is not None or \
                    self.owner != os.getpid():  # a forked copy of the caller starts its own
                self.process, self.owner = self._start(), os.getpid()
            assert self.process.stdin is not None
            request = {"path": os.path.abspath(path), "architecture": architecture,
                       "seconds": PROBE_SECONDS}
            try:
                self.process.stdin.write(json.dumps(request) + "\n")
                self.process.stdin.flush()
                reply = self.replies.get(timeout=PROBE_SECONDS)
            except BrokenPipeError:
                reply = None
            except queue.Empty:
                self._stop()
                return [f"reading the file's structure took over {PROBE_SECONDS:g} s and was "
                        "stopped: a damaged HDF5 file can make the HDF5 library loop forever"]
            if reply is None:
                status = self._stop()
                return [f"the HDF5 library crashed reading the file's structure (exit status "
                        f"{status}): the file is damaged"]
            return list(json.loads(reply))


_PROBER = _Prober()
# Files whose structure was read safely, by (path, device, inode, size, mtime, ctime): a
# repeated load skips the child (~30 ms for ResNet-50's 320 tensors, more when the machine is
# busy; starting the child ~0.3 s once per process). A file changed in place within the same
# timestamp tick (coarse: ~4 ms on ext4, 2 s on FAT) would keep its key, so only a file
# unchanged for RACY_NS before the probe began is remembered (git's "racy" rule).
_VERIFIED: set[tuple[object, ...]] = set()
RACY_NS = 2_000_000_000


def probe(path: Path, architecture: str | None = None) -> list[str]:
    """Every problem of the file's structure, found in the child process; [] when it is safe
    to open here.

    Raises:
        OSError: the child process cannot be started.
    """
    status = path.stat()
    key = (str(path.resolve()), status.st_dev, status.st_ino, status.st_size,
           status.st_mtime_ns, status.st_ctime_ns)
    if key in _VERIFIED:
        return []
    started = time.time_ns()
    problems = _PROBER.check(path, architecture)
    if not problems and started - max(status.st_mtime_ns, status.st_ctime_ns) > RACY_NS:
        if len(_VERIFIED) > 4096:
            _VERIFIED.clear()
        _VERIFIED.add(key)
    return problems
