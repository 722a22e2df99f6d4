"""One public API: every name users need is importable from `pytest_parity`, listed once (in
`pytest_parity/__init__.pyi`, which type checkers read and the package reads at import)."""

import ast
import re
import tomllib
from pathlib import Path

import pytest

import pytest_parity

ROOT = Path(__file__).resolve().parents[2]
STUB = ROOT / "pytest_parity" / "__init__.pyi"
EXAMPLES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _stub_exports():
    return {alias.name: node.module for node in ast.parse(STUB.read_text()).body
            if isinstance(node, ast.ImportFrom) for alias in node.names}


def test_the_stub_is_the_one_list_and_every_name_resolves_to_its_module_object():
    exports = _stub_exports()
    assert sorted(pytest_parity.__all__) == sorted(exports)
    for name, module in exports.items():
        deep = __import__(module, fromlist=[name])
        assert getattr(pytest_parity, name) is getattr(deep, name), name  # old paths work too


def test_the_stub_reexports_explicitly_and_ships_with_the_package():
    stub = ast.parse(STUB.read_text())
    implicit = [alias.name for node in stub.body if isinstance(node, ast.ImportFrom)
                for alias in node.names if alias.asname != alias.name]
    assert not implicit, f"write `import {implicit[0]} as {implicit[0]}`: mypy re-exports those"
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["pytest_parity"]
    assert {"__init__.pyi", "py.typed"} <= set(package_data)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        pytest_parity.nope  # noqa: B018


def _code_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("doc", EXAMPLES, ids=lambda path: path.name)
def test_examples_import_public_names_from_the_top_level(doc):
    deep = [f"{doc.name}: from {node.module} import {alias.name}"
            for block in _code_blocks(doc) for node in ast.walk(ast.parse(block))
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pytest_parity.")
            for alias in node.names]
    assert not deep, f"import these from pytest_parity (add to __init__.pyi if missing): {deep}"
