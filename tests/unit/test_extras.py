"""pyproject.toml's extras against what installs cleanly and what the noxfile's sessions use.

torchvision only in the zoo's extra: its wheel on this machine's index is a CUDA build that,
beside CPU torch, breaks `from transformers import BertModel` ("operator torchvision::nms does
not exist"), and only this repository's zoo (models/) needs it.
"""

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {name: [re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()
                   for requirement in requirements]
            for name, requirements in project["optional-dependencies"].items()}


def _session_extras():
    """Each nox session's extras, as its `install(session, "a,b")` call names them."""
    found = {}
    for node in ast.parse((ROOT / "noxfile.py").read_text()).body:
        if isinstance(node, ast.FunctionDef):
            for call in ast.walk(node):
                if isinstance(call, ast.Call) and ast.unparse(call.func) == "install":
                    found[node.name] = ast.literal_eval(call.args[1]).split(",")
    return found


def test_torchvision_is_in_the_zoos_extra_only():
    holding = [name for name, packages in _extras().items() if "torchvision" in packages]
    assert holding == ["zoo"]


def test_every_extra_a_nox_session_installs_exists():
    sessions = _session_extras()
    assert {"tests", "parity", "lint", "bench", "gate", "gpu", "golden"} <= set(sessions)
    extras = _extras()
    missing = {session: sorted(set(wanted) - set(extras))
               for session, wanted in sessions.items() if set(wanted) - set(extras)}
    assert not missing


def test_every_session_with_torch_installs_the_zoo():
    """The repository's tests, benchmarks and parity cases all run the zoo's torchvision
    models, which only the zoo extra brings."""
    lacking = [session for session, wanted in _session_extras().items()
               if "torch" in wanted and "zoo" not in wanted]
    assert not lacking


def test_xdist_has_an_extra():
    assert "pytest-xdist" in _extras()["xdist"]
