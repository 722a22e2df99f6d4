"""The package's rooms: each module in a layer, imports only downward, no import circles;
other rooms import a room's face, not its modules; docs/architecture.md names every module.

Every import of a pytest_parity module counts, at module level or inside a function (a lazy
import is still a dependency). A new module must be placed in LAYERS, on purpose.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_parity"
MAX_LINES = 300

# Lowest first. A module may import from its own layer and the layers below it, never above.
LAYERS = [
    ("foundation", {"errors", "arrays", "atomic", "threads", "project", "options", "devices",
                    "numerics", "jax_cache", "torchvision_compat", "environment", "layouts",
                    "inputs", "nnx_bridge", "strategies", "report", "report_picture", "gates",
                    "user_frames", "caches", "calls", "decoders",
                    "progress", "case_context", "parity_record"}),
    ("mapping", {"mapping"}),
    ("pairs", {"registry"}),
    ("checkpoint", {"checkpoint"}),
    ("compare", {"compare"}),
    ("diagnose", {"diagnose"}),
    ("golden", {"golden"}),
    ("branches", {"branches"}),
    ("train", {"train"}),
    ("run", {"run"}),
    ("faces", {"__init__", "cases", "fixtures", "plugin", "cli"}),
]
WINGS = [name for _, rooms in LAYERS for name in rooms if (PACKAGE / name).is_dir()]
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"

# The modules that other rooms import whole, past the face (`from pytest_parity.compare import
# records`): each holds the run's state behind a few functions, called through the module's name.
NAMESPACES = {
    "pytest_parity.compare.records": "where comparisons wait for the report: collecting(), emit()",
    "pytest_parity.compare.detail": "the run's verbosity for long failures: applied(), full()",
    "pytest_parity.compare.case_tolerances": "the running case's layers: applied(), current(), "
                                             "verdict() (a name the face's verdict.py would hide)",
    "pytest_parity.diagnose.mode": "the run's --parity-trace mode: applied(), wanted()",
    "pytest_parity.checkpoint.shape_cache": "where traced Flax shapes are kept: keep_in()",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """The pytest_parity modules `path` imports (`from package import submodule` included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("pytest_parity")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pytest_parity"):
            assert node.level == 0, f"{path}: relative import"
            submodules = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= {name for name in submodules if _is_module(name)}
            if any(not _is_module(name) for name in submodules):
                found.add(node.module)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    room = module.split(".")[1] if "." in module else "__init__"
    return next(index for index, (_, rooms) in enumerate(LAYERS) if room in rooms)


def test_every_module_has_a_layer():
    unplaced = [module for module in _graph()
                if not any([*module.split("."), "__init__"][1] in rooms for _, rooms in LAYERS)]
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


def test_imports_only_go_down():
    upward = [f"{module} ({LAYERS[_layer(module)][0]}) imports {target} "
              f"({LAYERS[_layer(target)][0]})"
              for module, targets in _graph().items() for target in sorted(targets)
              if _layer(target) > _layer(module)]
    assert not upward, "\n".join(upward)


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1 or module in graph.get(module, ()):
                circles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return circles


def _face_names(wing: str) -> set[str]:
    tree = ast.parse((PACKAGE / wing / "__init__.py").read_text())
    return next(set(ast.literal_eval(node.value)) for node in tree.body
                if isinstance(node, ast.Assign) and node.targets[0].id == "__all__")


def _past_the_face(path: Path) -> list[str]:
    """Imports of another room's module (`pytest_parity.<room>.<module>`, or a module taken
    from the room's package that its face does not export) outside NAMESPACES."""
    module = _module_name(path)
    own = module.split(".")[1] if "." in module else ""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            named = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pytest_parity"):
            wing = node.module.split(".")[1] if "." in node.module else ""
            named = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names
                                    if _is_module(f"{node.module}.{alias.name}") and not (
                                        wing in WINGS and alias.name in _face_names(wing)))]
        else:
            continue
        found += [f"{module} (line {node.lineno}) imports {name}" for name in named
                  if len(parts := name.split(".")) > 2 and parts[0] == "pytest_parity"
                  and parts[1] in WINGS and parts[1] != own and name not in NAMESPACES]
    return found


def test_other_rooms_import_the_face():
    """Outside a room, `from pytest_parity.compare import compare`, never
    `from pytest_parity.compare.closeness import compare`: a room's modules can move within
    it, its face says what it offers."""
    deep = [line for path in sorted(PACKAGE.rglob("*.py")) for line in _past_the_face(path)]
    assert not deep, "import these from the room's face (its __init__):\n" + "\n".join(deep)


def test_every_module_is_named_in_the_architecture_doc():
    """Each room's modules in its row of the map (`compare/  closeness.py ...`), the rest in
    any row: a module the doc leaves out is one a reader cannot place."""
    text = ARCHITECTURE.read_text()
    block = text.split("```")[1]
    rows: dict[str, str] = {}
    room = ""
    for line in block.splitlines():
        if line and not line[0].isspace():
            room = line.split()[0]
        rows[room] = rows.get(room, "") + line
    missing = [str(path.relative_to(PACKAGE)) for path in sorted(PACKAGE.rglob("*.py"))
               if path.name != "__init__.py" or path.parent == PACKAGE
               if path.name not in (rows.get(f"{path.parent.name}/", "")
                                    if path.parent != PACKAGE else block)]
    assert not missing, f"name these modules in docs/architecture.md's map: {missing}"


def test_no_import_circles():
    assert _circles(_graph()) == []


def test_the_circle_finder_finds_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(_circles(graph)) == [["a", "b", "c"], ["e"]]


@pytest.mark.parametrize("wing", WINGS)
def test_a_wings_init_is_a_thin_face(wing):
    """Only imports of its own modules' public names, and __all__ listing exactly them."""
    tree = ast.parse((PACKAGE / wing / "__init__.py").read_text())
    imported, listed = set(), set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            assert node.module.startswith(f"pytest_parity.{wing}."), ast.dump(node)
            imported |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Assign) and node.targets[0].id == "__all__":
            listed = set(ast.literal_eval(node.value))
        else:
            assert isinstance(node, ast.Expr), f"{wing}/__init__.py holds more than a face"
    assert imported == listed


def test_no_module_is_over_the_line_limit():
    long = {str(path.relative_to(PACKAGE)): count for path in PACKAGE.rglob("*.py")
            if (count := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


def test_every_room_is_packaged():
    """A subpackage that pyproject's package list leaves out would be missing from the wheel."""
    import tomllib
    from fnmatch import fnmatch

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [_module_name(init) for init in PACKAGE.rglob("__init__.py")]
    assert [name for name in packages if not any(fnmatch(name, p) for p in include)] == []
