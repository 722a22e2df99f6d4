"""A suite that merely has the plugin installed keeps its jax cache and its environment: the
plugin sets jax's persistent cache and CUBLAS_WORKSPACE_CONFIG only around parity cases, never
over what the user set, and restores them after each case (pytest_parity/jax_cache.py).

Each run is a fresh process (runpytest_subprocess), so jax reads its environment anew; an
xdist worker sets up its own at its first parity case.
"""

from importlib.util import find_spec

import pytest

pytest.importorskip("jax")

PLUGIN_DIR = ".pytest_cache/d/parity-xla"
JAX_VARIABLES = ("JAX_COMPILATION_CACHE_DIR", "JAX_ENABLE_COMPILATION_CACHE",
                 "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                 "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "CUBLAS_WORKSPACE_CONFIG")

PLAIN = """
import os

import jax
import jax.numpy as jnp

def test_plain():
    jax.jit(lambda x: x * 2 + 1)(jnp.ones(3)).block_until_ready()
    assert os.environ.get("JAX_COMPILATION_CACHE_DIR") == {user!r}
    assert "JAX_ENABLE_COMPILATION_CACHE" not in os.environ
    assert jax.config.jax_compilation_cache_dir == {user!r}
    assert jax.config.jax_enable_compilation_cache is True
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0  # jax's default
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
"""


def _environment(monkeypatch, **values):
    for name in JAX_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def _entries(directory):
    return sorted(path.name for path in directory.glob("*") if path.name != ".lockfile") \
        if directory.is_dir() else []


@pytest.mark.parametrize("options", [(), ("-p", "no:cacheprovider")], ids=["cache", "no-cache"])
def test_plain_suite_keeps_the_users_jax_cache_and_environment(pytester, monkeypatch, tmp_path,
                                                                options):
    user = str(tmp_path / "jaxcache")
    _environment(monkeypatch, JAX_COMPILATION_CACHE_DIR=user)
    pytester.makepyfile(test_plain=PLAIN.format(user=user))
    pytester.runpytest_subprocess(*options).assert_outcomes(passed=1)
    assert not (pytester.path / PLUGIN_DIR).exists()


MIXED = """
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

PLUGIN_DIR = Path({plugin!r})

def entries():
    return sorted(p.name for p in PLUGIN_DIR.glob("*") if p.name != ".lockfile")

def test_plain_before():
    jax.jit(lambda x: x - 3)(jnp.ones(4)).block_until_ready()
    assert jax.config.jax_compilation_cache_dir == {user!r}

@pytest.mark.parity
def test_parity_case():
    jax.jit(lambda x: x * 5)(jnp.ones(5)).block_until_ready()
    assert jax.config.jax_compilation_cache_dir == {inside!r}
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == {cublas!r}

def test_plain_after():
    before = entries()
    jax.jit(lambda x: x + 7)(jnp.ones(6)).block_until_ready()
    assert entries() == before  # the plugin's cache is no longer in use
    assert jax.config.jax_compilation_cache_dir == {user!r}
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == {user_cublas!r}
"""


def _mixed(pytester, user, inside, cublas, user_cublas):
    plugin = str(pytester.path / PLUGIN_DIR)
    pytester.makepyfile(test_mixed=MIXED.format(plugin=plugin, user=user, inside=inside,
                                                cublas=cublas, user_cublas=user_cublas))
    return plugin


@pytest.mark.parametrize("options", [
    (), pytest.param(("-n", "1"), marks=pytest.mark.skipif(
        find_spec("xdist") is None, reason="pytest-xdist is not installed"))],
    ids=["one-process", "xdist-worker"])
def test_parity_case_gets_the_plugins_cache_where_the_user_set_none(pytester, monkeypatch,
                                                                    options):
    _environment(monkeypatch)
    plugin = _mixed(pytester, user=None, inside=str(pytester.path / PLUGIN_DIR),
                    cublas=":4096:8", user_cublas=None)
    pytester.runpytest_subprocess(*options).assert_outcomes(passed=3)
    assert _entries(pytester.path / PLUGIN_DIR), f"nothing was cached in {plugin}"


def test_parity_case_keeps_the_users_cache_and_cublas_setting(pytester, monkeypatch, tmp_path):
    user = str(tmp_path / "jaxcache")
    _environment(monkeypatch, JAX_COMPILATION_CACHE_DIR=user, CUBLAS_WORKSPACE_CONFIG=":16:8")
    _mixed(pytester, user=user, inside=user, cublas=":16:8", user_cublas=":16:8")
    pytester.runpytest_subprocess().assert_outcomes(passed=3)
    assert not (pytester.path / PLUGIN_DIR).exists()


def test_an_explicit_option_chooses_the_parity_cases_cache_over_the_users(pytester, monkeypatch,
                                                                          tmp_path):
    user = str(tmp_path / "jaxcache")
    _environment(monkeypatch, JAX_COMPILATION_CACHE_DIR=user)
    _mixed(pytester, user=user, inside=str(pytester.path / "xla"), cublas=":4096:8",
           user_cublas=None)
    pytester.runpytest_subprocess("--parity-jax-cache=xla").assert_outcomes(passed=3)
    assert _entries(pytester.path / "xla")
    assert not (pytester.path / PLUGIN_DIR).exists()
