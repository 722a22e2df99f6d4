"""One small thread pool for work that releases the GIL: hashing and copying large arrays."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")
_pool: list[ThreadPoolExecutor] = []


def pool() -> ThreadPoolExecutor:
    if not _pool:
        _pool.append(ThreadPoolExecutor(max_workers=os.cpu_count() or 2,
                                        thread_name_prefix="parity"))
    return _pool[0]


def thread_map(function: Callable[[_Item], _Result], items: Iterable[_Item]) -> list[_Result]:
    """`[function(item) for item in items]`, spread over the pool, in order."""
    return list(pool().map(function, items))


def submit(function: Callable[..., _Result], *args: Any) -> Future[_Result]:
    return pool().submit(function, *args)
