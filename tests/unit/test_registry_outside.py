"""Pairs outside this repository: what a project elsewhere finds, and how it registers its own.

pytest-parity's own zoo (models/) is registered by this repository's pyproject only; run from
another folder, `parity convert --arch resnet18` must say so and how to register pairs, and a
project that lists its module under [tool.parity] zoo gets its pairs, .h5 -> Flax included.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_parity import registry
from pytest_parity.cli import main
from pytest_parity.errors import ParityError


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A folder outside the repository, with a registry that has loaded nothing yet."""
    # The small pairs the tests here build on register into the real registry first: imported
    # while it is swapped out, they would be missing from it afterwards (test_cli's tinynet).
    import tests.support.tinynet  # noqa: F401
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry, "_PAIRS", {})
    monkeypatch.setattr(registry, "_state", {"zoo_loaded": False, "searched": []})
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


def test_the_zoo_is_not_found_elsewhere_and_the_message_says_why_and_what_to_do(elsewhere):
    with pytest.raises(registry.UnknownArchitecture) as error:
        registry.get("resnet18")
    message = str(error.value)
    assert message.startswith("[parity] unknown architecture 'resnet18'; registered: none")
    assert f"no pyproject.toml at or above {elsewhere}" in message or \
        "pyproject.toml: no [tool.parity] zoo" in message
    assert "[tool.parity] zoo in its pyproject.toml" in message
    assert "registered only inside its repository" in message


def test_a_project_elsewhere_registers_its_own_pairs_and_converts_both_ways(elsewhere, capsys):
    torch = pytest.importorskip("torch")
    pytest.importorskip("flax")
    (elsewhere / "pyproject.toml").write_text('[tool.parity]\nzoo = ["my_pairs_elsewhere"]\n')
    (elsewhere / "my_pairs_elsewhere.py").write_text(
        "from pytest_parity.registry import Pair, register\n"
        "from tests.support.tinynet import MAPPING, flax_tinynet, torch_tinynet\n"
        "register(Pair('mynet', torch_tinynet, flax_tinynet, MAPPING, (1, 3, 8, 8)))\n")
    from tests.support.tinynet import torch_tinynet

    torch.save(torch_tinynet().state_dict(), elsewhere / "mynet.pt")
    assert main(["convert", "mynet.pt", "mynet.h5", "--arch", "mynet"]) == 0
    assert main(["convert", "mynet.h5", "mynet.msgpack"]) == 0  # the .h5 names its pair
    assert (elsewhere / "mynet.msgpack").stat().st_size > 0
    assert "tensors of mynet: mynet.h5 -> mynet.msgpack" in capsys.readouterr().out


@pytest.mark.parametrize(("pyproject", "words"), [
    ('[tool.parity]\nzoo = ["no_such_module_here"]\n',
     "[tool.parity] zoo: pairs module 'no_such_module_here' does not import "
     "(ModuleNotFoundError"),
    ('[tool.parity]\nzoo = "my_pairs"\n',
     "[tool.parity] zoo = 'my_pairs'; expected a list of module names"),
    ("[tool.parity\nzoo = [\n", "not readable as TOML"),
    ("tool = 3\n", "not readable as TOML with a [tool] table"),
    ("[tool]\nparity = 3\n", "[tool.parity] is a int, not a table"),
])
def test_a_broken_zoo_declaration_is_named(elsewhere, pyproject, words):
    (elsewhere / "pyproject.toml").write_text(pyproject)
    with pytest.raises(ParityError) as error:
        registry.get("anything")
    assert str(error.value).startswith(f"[parity] {elsewhere / 'pyproject.toml'}")
    assert words in str(error.value)


# Issue 29: a lookup imports only the module that registers the name. The heavy module stands
# for a project's other pairs (one that imports transformers): importing it fails the test.
TWO_MODULES = ('[tool.parity.pairs]\nlight = "light_pairs_lazy"\n'
               'heavy = "heavy_pairs_lazy"\n')
LIGHT = ("from pytest_parity.registry import Pair, register\n"
         "from tests.support.tinynet import MAPPING, flax_tinynet, torch_tinynet\n"
         "register(Pair('light', torch_tinynet, flax_tinynet, MAPPING, (1, 3, 8, 8)))\n")
HEAVY = "raise RuntimeError('heavy_pairs_lazy was imported')\n"


@pytest.fixture
def two_modules(elsewhere):
    (elsewhere / "pyproject.toml").write_text(TWO_MODULES)
    (elsewhere / "light_pairs_lazy.py").write_text(LIGHT)
    (elsewhere / "heavy_pairs_lazy.py").write_text(HEAVY)
    yield elsewhere
    for module in ("light_pairs_lazy", "heavy_pairs_lazy", "wrong_pairs_lazy"):
        sys.modules.pop(module, None)


def test_looking_up_one_pair_imports_only_its_module(two_modules):
    assert registry.registered_names() == ["heavy", "light"]  # the table, nothing imported
    assert registry.names() == ["heavy", "light"]
    assert "light_pairs_lazy" not in sys.modules
    assert registry.get("light").name == "light"
    assert "light_pairs_lazy" in sys.modules
    assert "heavy_pairs_lazy" not in sys.modules
    with pytest.raises(RuntimeError, match="heavy_pairs_lazy was imported"):
        registry.get("heavy")  # the module's own error, with its traceback


def test_a_table_module_that_registers_no_such_pair_is_named(two_modules):
    (two_modules / "pyproject.toml").write_text(
        TWO_MODULES + 'other = "wrong_pairs_lazy"\n')
    (two_modules / "wrong_pairs_lazy.py").write_text("")
    with pytest.raises(ParityError) as error:
        registry.get("other")
    assert str(error.value) == (
        f"[parity] {two_modules / 'pyproject.toml'} [tool.parity.pairs]: other = "
        "'wrong_pairs_lazy', but importing 'wrong_pairs_lazy' registered no pair 'other'; "
        "register(Pair('other', ...)) there, or name the module that does")


@pytest.mark.parametrize("table", ['[tool.parity]\npairs = ["x"]\n',
                                   '[tool.parity.pairs]\nx = 3\n'])
def test_a_broken_pair_table_is_named(elsewhere, table):
    (elsewhere / "pyproject.toml").write_text(table)
    with pytest.raises(ParityError) as error:
        registry.registered_names()
    assert str(error.value).startswith(
        f"[parity] {elsewhere / 'pyproject.toml'} [tool.parity.pairs]")


def test_the_cli_converts_with_only_the_named_pairs_module(two_modules):
    torch = pytest.importorskip("torch")
    pytest.importorskip("flax")
    from tests.support.tinynet import torch_tinynet

    torch.save(torch_tinynet().state_dict(), two_modules / "light.pt")
    repository = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "pytest_parity.cli", "convert", "light.pt", "light.h5",
         "--arch", "light"], cwd=two_modules, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(repository)}, check=False)
    assert done.returncode == 0, done.stderr
    assert "tensors of light: light.pt -> light.h5" in done.stdout


def test_an_installed_packages_pair_entry_point_imports_only_its_module(two_modules,
                                                                        monkeypatch):
    from importlib.metadata import EntryPoint

    (two_modules / "pyproject.toml").write_text("")
    installed = [EntryPoint("light", "light_pairs_lazy", registry.PAIRS_ENTRY_POINT_GROUP),
                 EntryPoint("heavy", "heavy_pairs_lazy", registry.PAIRS_ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: [
        entry for entry in installed if entry.group == group])
    monkeypatch.syspath_prepend(str(two_modules))
    assert registry.registered_names() == ["heavy", "light"]
    assert registry.get("light").name == "light"
    assert "heavy_pairs_lazy" not in sys.modules
