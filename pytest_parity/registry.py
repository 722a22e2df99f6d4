"""Registered pairs: an architecture's name -> its torch model, Flax model, mapping, input.

A repository names where each pair is registered, and looking a pair up (`get(name)`) imports
only that module: its pyproject's name table, `[tool.parity.pairs]`, a line a pair (`resnet18
= "mypackage.vision_pairs"`), or, for an installed package, an entry point a pair in the
`pytest_parity.pairs` group (PAIRS_ENTRY_POINT_GROUP) named as the pair, the pyproject winning.
Both are read importing nothing (`registered_names()`: the report picture's rows). A module
the table names must `register(Pair(name, ...))` that name, else `get` says so.

The older ways still work, importing every module they name the first time a name is not
otherwise known: `[tool.parity] zoo = ["mypackage.pairs"]` and entry points in the
`pytest_parity.zoo` group (ENTRY_POINT_GROUP). Factories are called lazily, so registering
imports neither torch nor jax.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from collections.abc import Mapping as MappingType
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np

from pytest_parity.calls import flax_called_with, wrapped_module
from pytest_parity.decoders import Decoding
from pytest_parity.errors import ParityError
from pytest_parity.inputs import Input, check_inputs, examples, mask_of
from pytest_parity.inputs import to_flax as inputs_to_flax
from pytest_parity.layouts import Layout
from pytest_parity.mapping import LazyMapping, Mapping
from pytest_parity.nnx_bridge import port
from pytest_parity.project import declared_pairs, parity_table

ENTRY_POINT_GROUP = "pytest_parity.zoo"  # modules, each imported: the older way
PAIRS_ENTRY_POINT_GROUP = "pytest_parity.pairs"  # one a pair, named as the pair


class UnknownArchitecture(ParityError):
    """A name that no registered pair carries."""


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per name
class Pair:
    """One architecture in both frameworks.

    What the models take: an image model one positional batch, `input_shape` being its torch
    shape (the Flax model takes the same batch in its own layout, `input_layout`: NCHW for
    torch is NHWC for Flax); a model of named inputs (a text model: token ids, attention mask,
    token types) declares `inputs` instead, each an `Input`, and both sides are called with
    them as keyword arguments. `preprocess` turns an image (PIL) into such a batch the way the
    original implementation does. `tolerances` overrides the per-dtype defaults of
    pytest_parity.compare.tolerance for this pair's outputs: {"bfloat16": {"rtol": ...,
    "atol": ...}}. `golden`, where given, computes the original implementation's outputs and
    their provenance for `parity golden` (see pytest_parity.golden.files).
    `checkpoint(seed, cache_dir)`, where given, returns the pair's canonical checkpoint for a
    seed (the zoo's seeded, realistic weights, or real weights that ignore the seed); without
    it the `parity_pair` fixture uses the torch model's weights as its factory builds them
    (its initialisation under torch.manual_seed(seed), or `from_pretrained` of a local
    directory).

    Ports this project did not write (pytest_parity.calls): `torch_call` and `flax_call` are
    keyword arguments every call of that side gets (`{"use_cache": False}`, `{"deterministic":
    True}`, `{"train": False}`); `output_layout` says where a Flax output is already in torch's
    layout (one Layout for every output, or by output name: `{"last_hidden_state":
    Layout.SAME}`; default: the input's layout); `outputs="common"` compares the outputs both
    sides return (an option one library turns on by default), "all" (default) all of them.
    """

    name: str
    torch_model: Callable[[], Any]
    flax_model: Callable[[], Any]
    mapping: Mapping  # or a function building it, called when the pair is first used
    input_shape: tuple[int, ...] = ()
    preprocess: Callable[[Any], Any] | None = None
    tolerances: MappingType[str, MappingType[str, float]] = field(default_factory=dict)
    golden: Callable[[], tuple[dict[str, Any], dict[str, Any]]] | None = None
    checkpoint: Callable[[int, Path], Any] | None = None
    input_layout: Layout = Layout.IMAGE
    inputs: tuple[Input, ...] = ()
    torch_call: MappingType[str, Any] = field(default_factory=dict)
    flax_call: MappingType[str, Any] = field(default_factory=dict)
    output_layout: Layout | MappingType[str, Layout] | None = None
    outputs: str = "all"
    decoding: Decoding | None = None  # each side's decoding with its KV cache (decoders.py)

    def __post_init__(self) -> None:
        if bool(self.inputs) == bool(self.input_shape):
            raise ParityError(f"Pair({self.name!r}): give either input_shape (one "
                              "positional batch) or inputs=(Input(...), ...) (named inputs), "
                              "not both and not neither")
        names = [d.name for d in self.inputs]
        if repeated := sorted({name for name in names if names.count(name) > 1}):
            raise ParityError(f"Pair({self.name!r}): two inputs are named "
                              f"{repeated[0]!r}; each name is a keyword both models take once")
        if callable(self.mapping) and not isinstance(self.mapping, Mapping):
            object.__setattr__(self, "mapping", LazyMapping(self.mapping, self.name))
        if self.output_layout is not None and self.inputs:
            raise ParityError(f"Pair({self.name!r}): output_layout applies to a pair "
                              "of one positional batch (input_shape); named inputs' outputs "
                              "are compared as they are")
        if self.outputs not in ("all", "common"):
            raise ParityError(f"Pair({self.name!r}): outputs={self.outputs!r}; "
                              "'all' (every output, the default) or 'common' (those both "
                              "sides return)")

    def output_layouts(self) -> dict[str, Layout]:
        """Where the Flax side's outputs are in a layout of their own, by output name ("*":
        every output)."""
        if self.output_layout is None:
            return {}
        if isinstance(self.output_layout, Layout):
            return {"*": self.output_layout}
        return {str(name): Layout(layout) for name, layout in self.output_layout.items()}

    def tolerance(self, dtype: str) -> dict[str, float]:
        """The pair's rtol/atol for outputs of `dtype` ({} where the defaults apply)."""
        return dict(self.tolerances.get(dtype, {}))

    @property
    def named_inputs(self) -> bool:
        """Whether the models take named inputs (keyword arguments) rather than one batch."""
        return bool(self.inputs)

    def describe_inputs(self) -> str:
        if self.named_inputs:
            return "; ".join(d.describe() for d in self.inputs)
        return f"one batch {self.input_shape} float32 ({self.input_layout} for Flax)"

    def flax_examples(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The Flax side's example inputs as (positional, keyword) jax.ShapeDtypeStructs."""
        import jax

        if self.named_inputs:
            return (), {d.name: d.flax_example() for d in self.inputs}
        shape = self.input_layout.flax_shape(self.input_shape)
        return (jax.ShapeDtypeStruct(shape, np.float32),), {}

    def example_inputs(self, seed: int) -> Any:
        """An example batch in torch's layout: an array, or a dict of arrays by name."""
        if self.named_inputs:
            return examples(self.inputs, seed)
        rng = np.random.default_rng(seed)
        return rng.standard_normal(self.input_shape).astype(np.float32)

    def check_inputs(self, given: Any) -> None:
        """Raises InputError where named inputs do not fit the declaration (names the pair)."""
        if self.named_inputs:
            check_inputs(self.inputs, given, f"pair {self.name!r}")

    def to_flax(self, given: Any) -> Any:
        """Torch-layout inputs as the Flax side takes them."""
        if self.named_inputs:
            return inputs_to_flax(self.inputs, given)
        return self.input_layout.to_flax(given)

    def padding(self, given: Any) -> np.ndarray | None:
        """The attention mask among the given inputs, where the pair declares one."""
        return mask_of(self.inputs, given)


@functools.cache
def flax_module_of(pair: Pair) -> Any:
    """The pair's Flax module as the plugin uses it, built once per process: a Linen module as
    its factory returns it (the Linen module inside a library's model object); an NNX module
    built abstractly (nnx.eval_shape) behind NNXPort; called with the pair's flax_call."""
    return flax_called_with(port(lambda: wrapped_module(pair.flax_model())), pair.flax_call,
                            pair.output_layouts())


_PAIRS: dict[str, Pair] = {}
# Whether the zoo modules were imported, and where they were looked for (for the message);
# the name table (read once per working directory): name -> (module, where it is said).
_state: dict[str, Any] = {"zoo_loaded": False, "searched": []}


def register(pair: Pair) -> Pair:
    _PAIRS[pair.name] = pair
    return pair


def _on_path(root: Path | None) -> None:
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))


def _import(module: str, where: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as error:  # the module's own errors keep their traceback
        raise ParityError(f"{where}: pairs module {module!r} does not import "
                          f"({type(error).__name__}: {error})") from None


def _table() -> dict[str, tuple[str, str]]:
    """Every declared pair's name -> (its module, where that is said), importing nothing:
    the `pytest_parity.pairs` entry points, then the project's [tool.parity.pairs]."""
    cwd = Path.cwd().resolve()
    if _state.get("table_of") != cwd:
        table = {entry.name: (entry.module, f"entry point {entry.name} = {entry.value} "
                                            f"({PAIRS_ENTRY_POINT_GROUP})")
                 for entry in entry_points(group=PAIRS_ENTRY_POINT_GROUP)}
        root, declared = declared_pairs(cwd)
        _state.update(table={**table, **declared}, table_of=cwd, root=root)
    return dict(_state["table"])


def _load_declared(name: str, module: str, where: str) -> Pair:
    """Import the one module the table names for `name`; it must register that name."""
    _on_path(_state.get("root"))
    _import(module, f"{where} {name}")
    if name not in _PAIRS:
        raise ParityError(f"{where}: {name} = {module!r}, but importing {module!r} "
                          f"registered no pair {name!r}; register(Pair({name!r}, ...)) there, "
                          "or name the module that does")
    return _PAIRS[name]


def _load_entry_points() -> list[str]:
    loaded = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {entry_point.name} = {entry_point.value} ({ENTRY_POINT_GROUP})"
        try:
            entry_point.load()
        except ImportError as error:
            raise ParityError(f"{where}: does not import ({type(error).__name__}: "
                              f"{error})") from None
        loaded.append(where)
    return loaded


def load_zoo(start: Path | None = None) -> None:
    """Import the modules that register pairs: entry points, then the project's pyproject.

    Raises:
        ParityError: a zoo module or entry point that does not import, or a pyproject whose
            `[tool.parity] zoo` is not a list of module names.
    """
    start = (start or Path.cwd()).resolve()
    searched = _load_entry_points() or [f"no {ENTRY_POINT_GROUP!r} entry point installed"]
    root, table = parity_table(start)
    modules = table.get("zoo", [])
    pyproject = root / "pyproject.toml" if root is not None else None
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ParityError(f"{pyproject}: [tool.parity] zoo = {modules!r}; expected a "
                          'list of module names, e.g. zoo = ["mypackage.pairs"]')
    if modules:
        _on_path(root)
    for module in modules:
        _import(module, f"{pyproject} [tool.parity] zoo")
    searched.append(f"no pyproject.toml at or above {start}" if pyproject is None else
                    f"{pyproject}: zoo {modules}" if modules else
                    f"{pyproject}: no [tool.parity] zoo")
    _state.update(zoo_loaded=True, searched=searched)


def get(name: str) -> Pair:
    """The pair registered under `name`, importing only the module the name table gives for
    it; a name the table lacks imports the older `zoo` list and entry points.

    Raises:
        ParityError: the table's module does not import, or registers no pair of that name.
        UnknownArchitecture: naming the registered architectures and where pairs were
            looked for.
    """
    if name in _PAIRS:
        return _PAIRS[name]
    table = _table()
    if name in table:
        return _load_declared(name, *table[name])
    if not _state["zoo_loaded"]:
        load_zoo()
    if name not in _PAIRS:
        known = ", ".join(sorted({*_PAIRS, *table})) or "none"
        raise UnknownArchitecture(
            f"unknown architecture {name!r}; registered: {known} (looked in: "
            f"{'; '.join(_state['searched'])}). A project registers its pairs "
            "(pytest_parity.register(Pair(...))) in modules it names under "
            '[tool.parity.pairs] (name = "module", imported when that name is looked up) or '
            f"[tool.parity] zoo in its pyproject.toml, or in the {PAIRS_ENTRY_POINT_GROUP!r} "
            f"or {ENTRY_POINT_GROUP!r} entry point groups; pytest-parity's own zoo (resnet*, "
            "vit_*) is registered only inside its repository.")
    return _PAIRS[name]


def names() -> list[str]:
    """Every pair's name: the name table's and those the `zoo` list registers (imported)."""
    if not _state["zoo_loaded"]:
        load_zoo()
    return registered_names()


def registered_names() -> list[str]:
    """The names registered so far and those the name table declares, importing nothing."""
    return sorted({*_PAIRS, *_table()})
