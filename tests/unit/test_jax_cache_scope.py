"""The parity cases' jax cache where jax does not import as a whole: nothing is set, and the
run goes on (the case that uses jax reports the broken install, not the session)."""

import sys

import pytest


def test_a_jax_that_does_not_import_sets_nothing_and_raises_nothing(monkeypatch, tmp_path):
    pytest.importorskip("jax")
    from pytest_parity import jax_cache

    monkeypatch.setitem(sys.modules, "jax.experimental.compilation_cache", None)  # ImportError
    with jax_cache.applied(tmp_path / "xla", explicit=True) as values:
        assert values == {}
    assert not (tmp_path / "xla").exists()
