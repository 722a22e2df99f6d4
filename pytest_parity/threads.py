"""One small thread pool for work that releases the GIL: hashing and copying large arrays.

Each piece of work runs in a copy of the submitting thread's context, so a comparison made in
a worker thread sees the running case (pytest_parity.case_context: its tolerances, its
records).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
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
    # One copy for each item: a context runs in one thread at a time.
    return list(pool().map(lambda pair: pair[0].run(function, pair[1]),
                           [(copy_context(), item) for item in items]))


def submit(function: Callable[..., _Result], *args: Any) -> Future[_Result]:
    return pool().submit(copy_context().run, function, *args)
