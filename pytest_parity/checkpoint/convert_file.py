"""`parity convert`: one file to another, chosen by their suffixes.

torch (.pt/.pth/.bin/.safetensors), Flax Linen variables (.msgpack, flax.serialization's
format) or an NNX state (.nnx.msgpack: the state's pure dict, see flax_files) -> canonical .h5
(needs the architecture); canonical .h5 -> torch, Linen, NNX, .npz, .json or a smaller .h5;
torch -> torch. `keys` keeps only the listed keys of the source (torch keys for a
torch source, canonical paths for a .h5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pytest_parity.checkpoint.format import Checkpoint, load, save
from pytest_parity.errors import CheckpointError
from pytest_parity.registry import Pair

CANONICAL_SUFFIX = ".h5"
FLAX_SUFFIX = ".msgpack"
NNX_SUFFIX = ".nnx.msgpack"
EXPORT_SUFFIXES = (".npz", ".json")


def read_key_list(path: str | Path) -> list[str]:
    """Keys one per line; blank lines and `#` comments ignored, and anything after the first
    word, so the output of `parity inspect --keys` can be fed back."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, ["no such file (the --keys list)"])
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise CheckpointError(path, [f"the --keys list is not UTF-8 text (byte {error.start}); "
                                     "give one key per line"]) from None
    except OSError as error:
        raise CheckpointError(path, [f"the --keys list cannot be read "
                                     f"({error.strerror or type(error).__name__})"]) from None
    words = (line.split("#", 1)[0].split() for line in text.splitlines())
    return [parts[0] for parts in words if parts]


def _select(arrays: Mapping[str, np.ndarray], keys: Sequence[str] | None,
            source: Path) -> dict[str, np.ndarray]:
    if keys is None:
        return dict(arrays)
    unknown = [key for key in keys if key not in arrays]
    if unknown:
        raise CheckpointError(source, [f"{key}: listed in --keys but not in the file"
                                       for key in unknown])
    return {key: arrays[key] for key in keys}


def _kind(path: Path) -> str:
    from pytest_parity.checkpoint.torch_files import is_torch_file

    if is_torch_file(path):
        return "torch"
    if path.suffix == CANONICAL_SUFFIX:
        return "canonical"
    if path.suffix in EXPORT_SUFFIXES:
        return "export"
    if path.name.endswith(NNX_SUFFIX):
        return "nnx"
    if path.suffix == FLAX_SUFFIX:
        return "flax"
    return "unknown"


def _pair(source: Path, architecture: str | None) -> Pair:
    from pytest_parity import registry

    if architecture is None:
        raise CheckpointError(source, ["which architecture is this? pass --arch NAME "
                                       f"(registered: {', '.join(registry.names()) or 'none'})"])
    return registry.get(architecture)


def _linen_variables(state: dict[object, object], pair: Pair, source: Path) -> dict[str, object]:
    """An NNX state's pure dict as Linen-style variables: each path in the collection its
    mapping rule names (the variable type the NNX model gives it)."""
    from pytest_parity.checkpoint.flax_files import nnx_state_paths
    from pytest_parity.mapping import unflatten

    flat, unknown = {}, []
    for path, value in nnx_state_paths(state).items():
        rule = pair.mapping.rule_for(path)
        if rule is None or rule.collection is None:
            unknown.append(f"{path}: no rule of {pair.name} gives a Flax variable this path")
        else:
            flat[f"{rule.collection}/{path}"] = value
    if unknown:
        raise CheckpointError(source, sorted(unknown))
    return unflatten(flat)


def _from_flax(source: Path, target: Path, architecture: str | None,
               keys: Sequence[str] | None, overwrite: bool) -> str:
    from pytest_parity.checkpoint.convert import checkpoint_from_flax
    from pytest_parity.checkpoint.flax_files import read_variables

    if _kind(target) != "canonical":
        raise CheckpointError(target, ["Flax variables convert to a canonical .h5"])
    if keys is not None:
        raise CheckpointError(source, ["--keys applies to torch and .h5 sources"])
    pair = _pair(source, architecture)
    if _kind(source) == "nnx":
        variables = _linen_variables(read_variables(source, nnx_state=True), pair, source)
    else:
        variables = read_variables(source)
    checkpoint = checkpoint_from_flax(variables, pair, source=f"flax:{source.name}",
                                      path=source)
    save(target, checkpoint, overwrite=overwrite)
    return f"{len(checkpoint.arrays)} tensors of {pair.name}: {source} -> {target}"


def _from_torch(source: Path, target: Path, architecture: str | None,
                keys: Sequence[str] | None, overwrite: bool) -> str:
    from pytest_parity.checkpoint.convert import checkpoint_from_torch, stale_keys
    from pytest_parity.checkpoint.torch_files import read_state_dict, write_state_dict

    state = _select(read_state_dict(source), keys, source)
    if _kind(target) == "torch":
        write_state_dict(target, state, overwrite=overwrite)
        return f"{len(state)} tensors: {source} -> {target}"
    if _kind(target) != "canonical":
        raise CheckpointError(target, ["a torch state dict converts to a canonical .h5 (or "
                                       "another torch file); convert that .h5 to .npz/.json"])
    pair = _pair(source, architecture)
    checkpoint = checkpoint_from_torch(state, pair, source=f"torch:{source.name}", path=source,
                                       complete=keys is None)
    save(target, checkpoint, overwrite=overwrite)
    stale = stale_keys(state, pair)
    left_out = (f"; left out {len(stale)} key{'s' * (len(stale) > 1)} the model does not save: "
                f"{', '.join(stale)}" if stale else "")
    return f"{len(checkpoint.arrays)} tensors of {pair.name}: {source} -> {target}{left_out}"


def _from_canonical(source: Path, target: Path, architecture: str | None,
                    keys: Sequence[str] | None, overwrite: bool) -> str:
    checkpoint = load(source)
    arrays = _select(checkpoint.arrays, keys, source)
    selected = Checkpoint(checkpoint.architecture, arrays,
                          {key: checkpoint.layouts[key] for key in arrays}, checkpoint.source)
    kind = _kind(target)
    if kind == "canonical":
        save(target, selected, overwrite=overwrite)
    elif kind == "export":
        from pytest_parity.checkpoint.exports import export

        export(selected, target, overwrite=overwrite)
    elif kind == "torch":
        from pytest_parity.checkpoint.convert import checkpoint_to_torch
        from pytest_parity.checkpoint.torch_files import write_state_dict

        pair = _pair(source, architecture or checkpoint.architecture)
        state = checkpoint_to_torch(selected, pair, source, complete=keys is None)
        write_state_dict(target, state, overwrite=overwrite)
    elif kind in ("flax", "nnx"):
        from pytest_parity.checkpoint.convert import checkpoint_to_flax
        from pytest_parity.checkpoint.flax_files import nnx_state_of, write_variables

        pair = _pair(source, architecture or checkpoint.architecture)
        if keys is not None:
            raise CheckpointError(target, ["Flax variables are written whole; drop --keys"])
        variables = checkpoint_to_flax(selected, pair, source)
        write_variables(target, nnx_state_of(variables) if kind == "nnx" else variables,
                        overwrite=overwrite)
    else:
        raise CheckpointError(target, [f"unsupported suffix {target.suffix!r}"])
    return f"{len(arrays)} tensors of {checkpoint.architecture}: {source} -> {target}"


def convert_file(source: str | Path, target: str | Path, *, architecture: str | None = None,
                 keys: Sequence[str] | None = None, overwrite: bool = False) -> str:
    """Convert `source` to `target` by suffix; returns a one-line summary.

    Raises:
        CheckpointError: an unsupported pair of suffixes, an unreadable source, listed keys
            that the source lacks, a target that exists without `overwrite`, or tensors that do
            not match the architecture (every problem listed).
    """
    source, target = Path(source), Path(target)
    kind = _kind(source)
    if kind == "torch":
        return _from_torch(source, target, architecture, keys, overwrite)
    if kind == "canonical":
        return _from_canonical(source, target, architecture, keys, overwrite)
    if kind in ("flax", "nnx"):
        return _from_flax(source, target, architecture, keys, overwrite)
    raise CheckpointError(source, [
        f"unsupported suffix {source.suffix!r}: convert reads a torch state dict (.pt, .pth, "
        ".bin, .safetensors), Flax variables (.msgpack), an NNX state (.nnx.msgpack) or a "
        "canonical checkpoint (.h5)"])
