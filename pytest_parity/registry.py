"""Registered pairs: an architecture's name -> its torch model, Flax model, mapping, input.

A repository registers its pairs with `register(Pair(...))` in a module named by its
pyproject (`[tool.parity] zoo = ["models.registry"]`) or by an entry point in the
`pytest_parity.zoo` group; `get(name)` imports those modules the first time a name is not
yet known. Factories are called lazily, so registering imports neither torch nor jax.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from collections.abc import Mapping as MappingType
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pytest_parity.errors import PREFIX, ParityError
from pytest_parity.layouts import Layout
from pytest_parity.mapping.rules import Mapping
from pytest_parity.project import parity_table

ENTRY_POINT_GROUP = "pytest_parity.zoo"


class UnknownArchitecture(ParityError):
    """A name that no registered pair carries."""


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per name
class Pair:
    """One architecture in both frameworks.

    `input_shape` is the torch shape of one example batch; the Flax model takes the same batch
    in its own layout (`input_layout`: an image batch, NCHW for torch, is NHWC for Flax).
    `preprocess` turns an image (PIL) into such a batch the way the original implementation
    does. `tolerances` overrides the per-dtype defaults of pytest_parity.compare.tolerance for
    this pair's outputs: {"bfloat16": {"rtol": ..., "atol": ...}}. `golden`, where given,
    computes the original implementation's outputs and their provenance for `parity golden`
    (see pytest_parity.golden.files). `checkpoint(seed, cache_dir)`, where given, returns the
    pair's canonical checkpoint for a seed (the zoo's seeded, realistic weights); without it
    the `parity_pair` fixture uses the torch model's own initialisation under
    torch.manual_seed(seed).
    """

    name: str
    torch_model: Callable[[], Any]
    flax_model: Callable[[], Any]
    mapping: Mapping
    input_shape: tuple[int, ...]
    preprocess: Callable[[Any], Any] | None = None
    tolerances: MappingType[str, MappingType[str, float]] = field(default_factory=dict)
    golden: Callable[[], tuple[dict[str, Any], dict[str, Any]]] | None = None
    checkpoint: Callable[[int, Path], Any] | None = None
    input_layout: Layout = Layout.IMAGE

    def tolerance(self, dtype: str) -> dict[str, float]:
        """The pair's rtol/atol for outputs of `dtype` ({} where the defaults apply)."""
        return dict(self.tolerances.get(dtype, {}))

    @property
    def flax_input_shape(self) -> tuple[int, ...]:
        return self.input_layout.flax_shape(self.input_shape)


_PAIRS: dict[str, Pair] = {}
_state = {"zoo_loaded": False}


def register(pair: Pair) -> Pair:
    _PAIRS[pair.name] = pair
    return pair


def load_zoo(start: Path | None = None) -> None:
    """Import the modules that register pairs: entry points, then the project's pyproject."""
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        entry_point.load()
    root, table = parity_table((start or Path.cwd()).resolve())
    modules = list(table.get("zoo", []))
    if root is not None and modules and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    for module in modules:
        importlib.import_module(module)
    _state["zoo_loaded"] = True


def get(name: str) -> Pair:
    """The pair registered under `name`.

    Raises:
        UnknownArchitecture: naming the registered architectures.
    """
    if name not in _PAIRS and not _state["zoo_loaded"]:
        load_zoo()
    if name not in _PAIRS:
        known = ", ".join(sorted(_PAIRS)) or "none"
        raise UnknownArchitecture(
            f"{PREFIX} unknown architecture {name!r}; registered: {known}. Register pairs in a "
            f"module listed under [tool.parity] zoo in pyproject.toml, or in the "
            f"{ENTRY_POINT_GROUP!r} entry point group.")
    return _PAIRS[name]


def names() -> list[str]:
    if not _state["zoo_loaded"]:
        load_zoo()
    return sorted(_PAIRS)
