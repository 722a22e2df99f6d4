"""Every benchmark gate of this repository (pyproject.toml's [[tool.parity.gates]]) reads
figures of a benchmark that `nox -s gate` (noxfile.py's GATED) runs: a gate whose benchmark
is not run is only reported "not measured", so a renamed benchmark would leave its gate
silently unchecked in CI."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _gated() -> list[str]:
    """noxfile.py's GATED, read without importing nox."""
    for node in ast.parse((ROOT / "noxfile.py").read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "GATED":
            return ast.literal_eval(node.value)
    raise AssertionError("noxfile.py has no GATED list")


def test_every_gate_reads_a_benchmark_that_the_gate_session_runs():
    pytest.importorskip("torch")
    pytest.importorskip("flax")
    pytest.importorskip("pytest_benchmark")
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                             "-p", "no:randomly", *_gated()],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = {line.rsplit("::", 1)[1] for line in result.stdout.splitlines() if "::" in line}
    gates = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["parity"]["gates"]
    unread = [f"{gate['name']}: {reference}" for gate in gates
              for reference in (gate["measure"], gate["baseline"])
              if reference.partition(":")[0] not in run]
    assert gates and not unread, unread
