"""The running case's context: its defaults outside a case, nesting, and worker threads."""

import threading

import numpy as np
import pytest

from pytest_parity import case_context, threads
from pytest_parity.compare import assert_close, case_tolerances, detail, records
from pytest_parity.diagnose import mode


def test_defaults_outside_a_case():
    context = case_context.current()
    assert context == case_context.CaseContext()
    assert (context.layers, context.verdict, context.trace, context.detail, context.records) \
        == ((), "auto", "on-failure", False, None)
    records.emit({"name": "nobody collects"})  # nothing collecting: nothing kept, no error
    assert case_tolerances.current() == () and mode.current() == "on-failure"
    assert not detail.full()


def test_each_helper_changes_its_field_and_restores_it():
    with case_tolerances.applied([("marker", 0.5, None)], "fixed"), mode.applied("off"), \
            detail.applied(True), records.collecting() as found:
        context = case_context.current()
        assert context.layers == (("marker", 0.5, None),) and context.verdict == "fixed"
        assert context.trace == "off" and context.detail and context.records is found
        with records.collecting() as inner:  # the innermost block collects
            records.emit({"name": "inner"})
        assert inner == [{"name": "inner"}] and found == []
    assert case_context.current() == case_context.CaseContext()


def test_the_context_is_frozen():
    with pytest.raises(AttributeError):
        case_context.current().trace = "always"  # type: ignore[misc]


def _seen(_: object) -> tuple[str, tuple, bool]:
    context = case_context.current()
    return threading.current_thread().name, context.layers, context.trace == "always"


def test_worker_threads_see_the_case():
    """The trace judges modules in the pool's threads: they must read the case's tolerances
    and emit into its records."""
    layers = [("marker", 0.25, 0.125)]
    with case_tolerances.applied(layers), mode.applied("always"), \
            records.collecting() as found:
        mapped = threads.thread_map(_seen, range(8))
        submitted = threads.submit(_seen, None).result()
        threads.thread_map(lambda index: assert_close(np.ones(2), np.ones(2),
                                                      name=f"leaf {index}"), range(3))
    assert all(name.startswith("parity") for name, _, _ in [*mapped, submitted])
    assert [seen[1:] for seen in [*mapped, submitted]] == [(tuple(layers), True)] * 9
    assert sorted(record["name"] for record in found) == ["leaf 0", "leaf 1", "leaf 2"]
    assert all(record["rtol"] == 0.25 for record in found)
    # Outside the case again, the pool's threads see the defaults.
    assert threads.thread_map(_seen, [0])[0][1:] == ((), False)
