"""A pair's mapping built when the pair first uses it (pytest_parity.registry.Pair)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytest_parity.errors import ParityError
from pytest_parity.mapping.rules import Mapping


class LazyMapping:
    """A pair's mapping built the first time the pair uses it (`Pair(mapping=lambda:
    automatic_mapping(...))`), so that registering pairs traces no model and a mapping's
    warnings come when it is used, not in every run that imports the pairs module."""

    def __init__(self, build: Callable[[], Mapping], owner: str) -> None:
        self._build, self._owner = build, owner
        self._built: Mapping | None = None

    def built(self) -> Mapping:
        if self._built is None:
            try:
                mapping = self._build()
            except AttributeError as error:  # not to be taken for a missing attribute
                raise ParityError(f"Pair({self._owner!r}): its mapping function "
                                  f"raised AttributeError: {error}") from error
            if not isinstance(mapping, Mapping):
                raise ParityError(f"Pair({self._owner!r}): its mapping function "
                                  f"returned {type(mapping).__name__}, not a Mapping")
            self._built = mapping
        return self._built

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # its own state (copy and pickle ask before __init__ ran)
            raise AttributeError(name)
        return getattr(self.built(), name)
