"""jax's persistent compilation cache around parity cases: a second run skips recompiling.

Measured here (ResNet-50 apply at batch 2, separate processes): compile 0.72 s with an empty
cache, 0.31 s from the cache. Every program of a parity case is cached (no minimum compile
time or size), so layer tests benefit too.

Only parity cases get it, and only where the user has not chosen a cache of their own:
  * the plugin's default directory (`.pytest_cache/d/parity-xla`) applies only where jax has
    no cache directory (JAX_COMPILATION_CACHE_DIR, jax.config, or a `jax.config.update` made
    before the case) and the cache is not switched off (JAX_ENABLE_COMPILATION_CACHE=false);
    otherwise the user's cache and its settings are left as they are, in the cases too;
  * an explicit `--parity-jax-cache=DIR|none` (or the ini `parity_jax_cache`) is the user's
    choice for the parity cases and applies to them even over the user's own directory.
The plugin sets jax.config only (never an environment variable) when a case starts, importing
jax first where it is installed (so jax reads the user's environment, as it would have), and
puts every value back when the case ends. Without pytest's cache (`-p no:cacheprovider`) and
without an explicit option, nothing is set. xdist workers do the same, each at its own cases.

What jax lets one undo (jax/_src/compilation_cache.py, jax 0.10): jax decides once per
process, at its first compile, whether the persistent cache is in use, and opens it at the
first compile with a directory; later config changes alone do not move it. So each time the
plugin changes the settings, and again when it restores them, it calls jax's public
`reset_cache()` (jax.experimental.compilation_cache): the next compile decides anew from the
config then in force, and a plain test after a parity case compiles under the user's
settings again. What cannot be undone: entries written during a case stay in the parity
cases' directory (that is the point), and the programs jax compiled during a case stay in its
in-memory caches for the rest of the process (as any compiled function does), whichever
cache they came from.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import Any


def settings(directory: Path | None) -> dict[str, Any]:
    """The jax config values for a cache in `directory` (None: the cache off)."""
    if directory is None:
        return {"jax_enable_compilation_cache": False}
    return {"jax_enable_compilation_cache": True,
            "jax_compilation_cache_dir": str(directory),
            "jax_persistent_cache_min_compile_time_secs": 0,
            "jax_persistent_cache_min_entry_size_bytes": 0}


def users_choice(config: Any) -> bool:
    """Whether jax's config (read from the user's environment, or set by their code) names a
    cache directory or switches the cache off."""
    return config.jax_compilation_cache_dir is not None \
        or not config.jax_enable_compilation_cache


@contextmanager
def applied(directory: Path | None, *, explicit: bool) -> Iterator[dict[str, Any]]:
    """Run the block with the parity cases' cache in `directory` (None: off); yields the values
    set ({} where nothing was). `explicit`: the user gave the option or the ini, which then
    wins over a cache the user's environment or code chose; otherwise theirs is kept."""
    if find_spec("jax") is None or (directory is None and not explicit):
        yield {}
        return
    try:
        import jax
        from jax.experimental.compilation_cache import compilation_cache
    except Exception:  # a broken jax install: the case that uses jax says so
        yield {}
        return
    if not explicit and users_choice(jax.config):
        yield {}
        return
    values = settings(directory)
    saved = {name: getattr(jax.config, name) for name in values}
    changed = {name: value for name, value in values.items() if saved[name] != value}
    if not changed:
        yield {}
        return
    for name, value in changed.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()  # the next compile opens the cache these values name
    try:
        yield changed
    finally:
        for name in changed:
            jax.config.update(name, saved[name])
        compilation_cache.reset_cache()  # and after the case, the one the user's values name
