"""torch state dicts on disk (.pt/.pth/.bin and .safetensors), read without unpickling code.

`.pt` files are read with `torch.load(weights_only=True)`, which refuses any pickled object
that is not a tensor or a plain container; `.safetensors` holds no code at all. Writes are
atomic and never replace a file unless asked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pytest_parity.arrays import to_numpy, to_torch, torch_tensor_problem
from pytest_parity.atomic import write_atomically
from pytest_parity.errors import CheckpointError, ParityError

PICKLE_SUFFIXES = (".pt", ".pth", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
# Wrappers that training scripts put around a state dict.
_WRAPPER_KEYS = ("state_dict", "model")


def is_torch_file(path: str | Path) -> bool:
    return Path(path).suffix in (*PICKLE_SUFFIXES, SAFETENSORS_SUFFIX)


def _holds_a_model(path: Path) -> bool:
    """Whether a torch file's pickle holds an nn.Module (its `_modules` and `_parameters`
    attributes), found by reading the opcodes of its data.pkl: nothing is unpickled."""
    import pickletools
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            data = archive.read(name) if name else b""
        names = {argument for _, argument, _ in pickletools.genops(data)
                 if isinstance(argument, str)}
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):  # not torch's zip format
        return False
    return {"_modules", "_parameters"} <= names


def _refusal(path: Path, error: Exception) -> str:
    """Why weights_only refused the file, without torch's advice to allow-list globals (which
    would run the file's code)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
    detail = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line),
                  lines[0])
    found = re.search(r"GLOBAL ([\w.]+)", detail)
    name = found.group(1) if found else detail.split(". Please")[0]
    what = f"a pickled {name}" if found else name
    if _holds_a_model(path):
        return (f"refused to unpickle: this file holds a pickled model object ({name}); save "
                "`model.state_dict()` instead (torch.save(model.state_dict(), path))")
    return (f"refused to unpickle: the file holds more than tensors ({what}); pytest-parity "
            "reads torch files only with torch.load(weights_only=True), which runs no pickled "
            "code")


def _unwrap(path: Path, content: Any) -> Mapping[str, Any]:
    import torch

    if isinstance(content, Mapping) and not all(isinstance(value, torch.Tensor)
                                                for value in content.values()):
        wrapped = next((content[key] for key in _WRAPPER_KEYS
                        if isinstance(content.get(key), Mapping)), None)
        content = content if wrapped is None else wrapped
    if not isinstance(content, Mapping):
        raise CheckpointError(path, [f"holds a {type(content).__name__}, not a state dict "
                                     "(a dict of tensor name -> tensor)"])
    problems = [f"{key}: {torch_tensor_problem(value)}" if isinstance(value, torch.Tensor)
                else f"{key}: a {type(value).__name__}, not a tensor"
                for key, value in content.items()
                if not isinstance(value, torch.Tensor) or torch_tensor_problem(value)]
    if problems:
        raise CheckpointError(path, problems)
    return content


_DOS_DIRECTORY_OR_VOLUME = 0x18  # MS-DOS attribute bits in a zip member's external_attr


def _check_zip_checksums(path: Path) -> None:
    """A zip-format .pt (torch >= 1.6) records each member's CRC-32, which torch.load never
    checks: a changed tensor byte loaded as that value. Checked here first (zlib's crc32 runs
    at GB/s; a legacy, non-zip .pt carries no checksum and is read as it is)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            # torch's reader (miniz) takes a member whose MS-DOS attributes say "directory"
            # (or "volume label") for one and loads its tensor as zeros; Python's zipfile
            # ignores those bits, so its CRC check passes (found by the fuzz test).
            marked = [info.filename for info in archive.infolist()
                      if info.external_attr & _DOS_DIRECTORY_OR_VOLUME]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError) as error:
        raise CheckpointError(path, [f"not a readable torch file (a damaged zip archive: "
                                     f"{type(error).__name__}: {error})"]) from None
    if damaged is not None:
        raise CheckpointError(path, [f"{damaged}: its CRC-32 does not match its bytes; the file "
                                     "is damaged"])
    if marked:
        raise CheckpointError(path, [f"{name}: marked as a directory in the zip archive, so "
                                     "torch would read it as zeros; the file is damaged"
                                     for name in marked])


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A torch state dict from a file, as numpy arrays (bfloat16 kept via ml_dtypes).

    Raises:
        CheckpointError: missing, unreadable, not a state dict, or holding pickled code.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, ["no such file"])
    try:
        if path.suffix == SAFETENSORS_SUFFIX:
            from safetensors.torch import load_file

            content: Any = load_file(path)
        else:
            _check_zip_checksums(path)
            content = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as error:
        raise CheckpointError(path, [_refusal(path, error)]) from None
    except Exception as error:  # torch and safetensors raise many types for a corrupt file
        raise CheckpointError(path, [f"not a readable torch file ({type(error).__name__}: "
                                     f"{str(error).splitlines()[0] if str(error) else ''})"]
                              ) from None
    return {key: to_numpy(value) for key, value in _unwrap(path, content).items()}


def write_state_dict(path: str | Path, state: Mapping[str, np.ndarray], *,
                     overwrite: bool = False) -> Path:
    """Write a state dict as .safetensors or .pt (by suffix), atomically.

    Raises:
        CheckpointError: an unsupported suffix, or the file exists and overwrite is False.
    """
    import torch

    path = Path(path)
    tensors = {key: to_torch(np.asarray(value)) for key, value in state.items()}
    if path.suffix == SAFETENSORS_SUFFIX:
        from safetensors.torch import save_file

        # safetensors stores no aliases and refuses tensors that share memory (tied weights,
        # as torch.load gives them): each key is written with its own copy of the values.
        seen: set[int] = set()
        for key, tensor in tensors.items():
            pointer = tensor.untyped_storage().data_ptr()
            if pointer in seen:
                tensors[key] = tensor.clone()
            seen.add(pointer)
        return write_atomically(path, lambda temporary: save_file(tensors, str(temporary)),
                                overwrite=overwrite)
    if path.suffix in PICKLE_SUFFIXES:
        return write_atomically(path, lambda temporary: torch.save(tensors, temporary),
                                overwrite=overwrite)
    raise CheckpointError(path, [f"unsupported suffix {path.suffix!r}; a torch state dict is "
                                 f"written as {', '.join(PICKLE_SUFFIXES)} or "
                                 f"{SAFETENSORS_SUFFIX}"])


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _factory_name(model_factory: Any) -> str:
    name = getattr(model_factory, "__qualname__", None)
    module = getattr(model_factory, "__module__", None)
    return f"{module}.{name}" if name and module else repr(model_factory)


def meta_build(model_factory: Any) -> Any:
    """The torch model built on the meta device: its structure and shapes, no memory, no
    initialisation worth the name.

    A factory that refuses the meta device (transformers' `from_pretrained`, which loads
    weights) is built as it is, once, and its model moved to the meta device.

    Raises:
        ParityError: the factory fails on the meta device and off it; names the factory and
            its error, in one line.
    """
    import torch

    try:
        with torch.device("meta"):
            return model_factory()
    except Exception as meta_error:
        try:
            model = model_factory()
        except Exception as error:
            raise ParityError(
                f"torch model factory {_factory_name(model_factory)}: it raised "
                f"{_first_line(error)} (on the meta device: {_first_line(meta_error)})"
            ) from error
    return model.to("meta")


def unsaved_buffers(model: Any) -> set[str]:
    """The buffers a torch model keeps without saving them (registered persistent=False, as
    transformers' BERT keeps `embeddings.position_ids`): a file written by an older version
    of the model may still hold them."""
    return {name for name, _ in model.named_buffers()} - set(model.state_dict())


def expected_state_shapes(model: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """Each state dict key's (shape, dtype) of a torch model (a meta-device build: free)."""
    return {key: (tuple(value.shape), str(value.dtype).removeprefix("torch."))
            for key, value in model.state_dict().items()}
