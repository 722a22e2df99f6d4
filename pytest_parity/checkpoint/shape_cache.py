"""The variable shapes a Flax module's init gives, kept on disk between runs.

Tracing `init` with `jax.eval_shape` to learn them costs 0.17-0.35 s for ResNet-50 (3.9 s for
the nine zoo models) on every run; reading them back costs a millisecond. A file is found by a
fingerprint of everything the shapes depend on: the pair's name, the jax and flax versions,
the module (a Linen module's repr holds its configuration), the example inputs, and the size
and modification time of every loaded source file of the packages that define the module and
the pair (editing the port makes a new fingerprint). A checkpoint that fails the check
against shapes read from disk is checked again against freshly traced ones before anything
is reported (`forget`), so a stale file can never cause a false error.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pytest_parity.atomic import WriteError, write_atomically

Shapes = dict[str, tuple[tuple[int, ...], str]]
_directory: list[Path] = []
_read_from_disk: dict[Any, Path] = {}  # pair -> the file its shapes came from


def keep_in(directory: Path | None) -> None:
    """Keep the shapes in `directory` from now on (None: trace them every time)."""
    _directory[:] = [directory] if directory is not None else []


def _source_stats(module_names: Iterable[str]) -> list[tuple[str, int, int]]:
    """(file, mtime_ns, size) of every loaded module of the top-level packages named."""
    tops = {name.partition(".")[0] for name in module_names if name}
    stats = []
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] not in tops:
            continue
        file = getattr(module, "__file__", None)
        if file:
            try:
                status = Path(file).stat()
            except OSError:
                continue
            stats.append((file, status.st_mtime_ns, status.st_size))
    return sorted(stats)


def fingerprint(pair: Any, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    import flax
    import jax
    from flax import linen

    factory = getattr(pair.flax_model, "func", pair.flax_model)  # functools.partial's target
    described = repr(module) if isinstance(module, linen.Module) else type(module).__qualname__
    inputs = [(name, tuple(value.shape), str(value.dtype))
              for name, value in [*enumerate(args), *sorted(kwargs.items())]]
    modules = [type(module).__module__, getattr(factory, "__module__", ""), __name__]
    if hasattr(module, "module"):  # an NNX module behind pytest_parity.nnx_bridge.NNXPort
        modules.append(type(module.module).__module__)
    text = json.dumps([pair.name, jax.__version__, flax.__version__, described,
                       [str(item) for item in inputs], _source_stats(modules)])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cached_shapes(pair: Any, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                  trace: Callable[[], Shapes]) -> Shapes:
    """The module's variable shapes: from disk where this fingerprint was kept, else traced
    (and kept). A file that cannot be read or parsed is traced over."""
    if not _directory:
        return trace()
    path = _directory[0] / f"{pair.name}-{fingerprint(pair, module, args, kwargs)}.json"
    try:
        shapes = {key: (tuple(shape), dtype)
                  for key, (shape, dtype) in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError):
        shapes = trace()
        try:
            text = json.dumps({key: [list(shape), dtype] for key, (shape, dtype) in shapes.items()})
            write_atomically(path, lambda temporary: temporary.write_text(text), overwrite=True)
        except (OSError, WriteError):  # a cache that cannot be written is only slower
            pass
        return shapes
    _read_from_disk[pair] = path
    return shapes


def forget(pair: Any) -> bool:
    """Drop the shapes read from disk for `pair` (they may be stale); whether there were."""
    path = _read_from_disk.pop(pair, None)
    if path is None:
        return False
    path.unlink(missing_ok=True)
    return True
