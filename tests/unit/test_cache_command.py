"""`parity cache`: lists the plugin's caches with their sizes, clears them and nothing else."""

import subprocess
import sys
import tempfile

import pytest

from pytest_parity.caches import human_size
from pytest_parity.cli import main

CACHE_DIRS = {"checkpoints": ".pytest_cache/d/parity-checkpoints",
              "xla": ".pytest_cache/d/parity-xla"}


def _fill(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project with each cache of a known size, pytest's own cache files and a nox venv;
    the temporary directory and the user cache redirected into tmp_path."""
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    _fill(root / CACHE_DIRS["checkpoints"] / "resnet50-seed0-v1.h5", 3_000)
    _fill(root / CACHE_DIRS["checkpoints"] / "flax-shapes" / "resnet50-abc.json", 500)
    _fill(root / CACHE_DIRS["xla"] / "jit_apply-123-cache", 1_500_000)
    _fill(root / ".pytest_cache" / "v" / "cache" / "lastfailed", 40)
    _fill(root / ".pytest_cache" / "README.md", 60)
    _fill(root / ".nox" / "tests" / "lib" / "torch.so", 7_000)
    _fill(root / "model.h5", 10)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("PYTEST_PARITY_CACHE", str(tmp_path / "user-cache"))
    for name in ("resnet18-seed0-v1.h5", "minilm_l6-7972323ecf3dd237.h5"):
        _fill(tmp_path / "user-cache" / name, 2_000)
    monkeypatch.chdir(root / "src")  # the project is found from below, as pytest finds it
    return root


def _run(capsys, *argv):
    code = main(["cache", *argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_listing_names_each_cache_its_path_contents_and_size(project, tmp_path, capsys):
    code, lines, _ = _run(capsys)
    assert code == 0
    assert lines == [
        f"pytest-parity's caches for {project}:",
        f"checkpoints  {project / CACHE_DIRS['checkpoints']}",
        "  seeded and converted checkpoints, Flax shape records: 3.5 kB in 2 files",
        f"xla  {project / CACHE_DIRS['xla']}",
        "  jax's persistent compilation cache (--parity-jax-cache's default): 1.5 MB in 1 file",
        f"tmp-checkpoints  {tmp_path / 'tmp' / 'pytest-parity-checkpoints'}",
        "  checkpoints of runs without pytest's cache and of `parity trace`: absent",
        f"golden  {tmp_path / 'user-cache'}",
        "  checkpoints `parity golden` computes from: 4.0 kB in 2 files",
        "total: 1.5 MB in 5 files",
        "`.pytest_cache` besides these (pytest's own and others', not cleared here): 100 B",
        "`.nox` (nox's environments, not cleared here): 7.0 kB",
    ]


def test_rootdir_names_the_project(project, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, lines, _ = _run(capsys, "--rootdir", str(project))
    assert lines[0] == f"pytest-parity's caches for {project}:"
    assert lines[2].endswith(": 3.5 kB in 2 files")


def test_clear_name_removes_only_that_cache(project, tmp_path, capsys):
    code, lines, _ = _run(capsys, "--clear", "xla")
    assert code == 0
    assert lines == [f"xla: freed 1.5 MB in 1 file ({project / CACHE_DIRS['xla']})"]
    assert not (project / CACHE_DIRS["xla"]).exists()
    assert (project / CACHE_DIRS["checkpoints"] / "resnet50-seed0-v1.h5").is_file()
    assert len(list((tmp_path / "user-cache").iterdir())) == 2


def test_clear_removes_every_plugin_cache_and_nothing_else(project, tmp_path, capsys):
    code, lines, _ = _run(capsys, "--clear")
    assert code == 0
    assert lines == [
        f"checkpoints: freed 3.5 kB in 2 files ({project / CACHE_DIRS['checkpoints']})",
        f"xla: freed 1.5 MB in 1 file ({project / CACHE_DIRS['xla']})",
        f"tmp-checkpoints: nothing to clear, {tmp_path / 'tmp' / 'pytest-parity-checkpoints'} "
        "is absent",
        f"golden: freed 4.0 kB in 2 files ({tmp_path / 'user-cache'})",
        "freed 1.5 MB in 5 files in all",
    ]
    left = sorted(str(path.relative_to(project)) for path in project.rglob("*") if path.is_file())
    assert left == [".nox/tests/lib/torch.so", ".pytest_cache/README.md",
                    ".pytest_cache/v/cache/lastfailed", "model.h5", "pyproject.toml"]
    assert (project / ".pytest_cache" / "d").is_dir()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["project", "tmp"]
    _, lines, _ = _run(capsys)
    assert "total: 0 B in 0 files" in lines


def test_unknown_name_is_a_parity_error_naming_the_caches(project, capsys):
    code, lines, err = _run(capsys, "--clear", "checkpoint")
    assert code == 2
    assert lines == []
    assert err.strip() == ("[parity] no cache named 'checkpoint'; the caches are: checkpoints, "
                           "xla, tmp-checkpoints, golden")
    assert (project / CACHE_DIRS["checkpoints"] / "resnet50-seed0-v1.h5").is_file()


def test_a_linked_cache_loses_the_link_never_its_targets_files(project, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    _fill(elsewhere / "precious.h5", 5_000)
    link = project / CACHE_DIRS["checkpoints"]
    for path in sorted(link.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    link.rmdir()
    link.symlink_to(elsewhere, target_is_directory=True)

    _, lines, _ = _run(capsys)
    assert lines[1:3] == [f"checkpoints  {link} -> {elsewhere}",
                          "  seeded and converted checkpoints, Flax shape records: a link; "
                          "--clear removes the link, not its target"]
    code, lines, _ = _run(capsys, "--clear", "checkpoints")
    assert code == 0
    assert lines == [f"checkpoints: removed the link {link} (its target {elsewhere} is left "
                     "alone)"]
    assert not link.is_symlink() and not link.exists()
    assert (elsewhere / "precious.h5").read_bytes() == b"x" * 5_000


@pytest.mark.parametrize("where", ["home", "project"])
def test_a_user_cache_set_to_a_broad_directory_is_refused(project, capsys, monkeypatch, where):
    broad = project if where == "project" else project.parent
    monkeypatch.setenv("HOME", str(project.parent))
    monkeypatch.setenv("PYTEST_PARITY_CACHE", str(broad))
    code, _, err = _run(capsys, "--clear", "golden")
    assert code == 2
    assert err.startswith(f"[parity] {broad}: refused to clear")
    assert (project / "pyproject.toml").is_file()


def test_a_rootdir_that_is_not_a_directory_is_a_parity_error(project, capsys):
    code, _, err = _run(capsys, "--rootdir", str(project / "missing"))
    assert code == 2
    assert err.strip() == f"[parity] --rootdir {project / 'missing'}: not a directory"


@pytest.mark.parametrize(("count", "written"), [
    (0, "0 B"), (999, "999 B"), (1_000, "1.0 kB"), (9_949, "9.9 kB"), (9_960, "10 kB"),
    (999_999, "1.0 MB"), (102_697_872, "103 MB"), (2_600_000_000, "2.6 GB"),
], ids=lambda value: str(value))
def test_human_size(count, written):
    assert human_size(count) == written


def test_the_command_imports_no_framework(project):
    script = ("import sys; from pytest_parity.cli import main; main(['cache']); "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in "
              "('torch', 'jax', 'flax', 'numpy', 'h5py')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=project, check=True)
    assert result.stdout.splitlines()[-1] == "[]"
