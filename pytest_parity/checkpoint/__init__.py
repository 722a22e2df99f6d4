"""Canonical checkpoints: the HDF5 format, conversions to and from each framework, files.

    format.py          Checkpoint; save and load the HDF5 file (docs/checkpoint-format.md)
    reading.py         an untrusted file's structure, checked before any tensor is read
    probe.py           that structure read first in a child process (HDF5 can loop or crash)
    streamed_writing.py  a checkpoint written tensor by tensor (save_tensors): a model too
                       large to hold in memory
    digest.py          the content digest of a checkpoint
    verify.py          a checkpoint against a model's expected tensors (TensorSpec)
    convert.py         checkpoint <-> torch state dict / Flax variables, checked on each step
    convert_file.py    `parity convert`: one file to another, by their suffixes
    torch_files.py     .pt/.pth/.bin and .safetensors state dicts (no code is unpickled)
    flax_files.py      Flax variables as msgpack
    flax_variables.py  a Flax module's variables from jax.eval_shape, never from init
    exports.py         .npz and .json for readers in other languages
    tensor_source.py   a file's tensors read a few at a time (a streamed check's blocks)
    inspection.py      the tree, the key list and the diff that `parity` prints
"""

from pytest_parity.checkpoint.convert import (
    checkpoint_from_flax,
    checkpoint_from_torch,
    checkpoint_to_flax,
    checkpoint_to_torch,
    meta_model,
)
from pytest_parity.checkpoint.convert_file import convert_file, read_key_list
from pytest_parity.checkpoint.digest import content_digest
from pytest_parity.checkpoint.exports import export
from pytest_parity.checkpoint.flax_files import read_variables, write_variables
from pytest_parity.checkpoint.format import Checkpoint, load, save
from pytest_parity.checkpoint.inspection import describe_tree, diff_lines, list_keys
from pytest_parity.checkpoint.streamed_writing import save_tensors
from pytest_parity.checkpoint.tensor_source import TensorSource, tensor_source
from pytest_parity.checkpoint.torch_files import read_state_dict, write_state_dict
from pytest_parity.checkpoint.verify import NonFiniteWarning, TensorSpec, verify

__all__ = [
    "Checkpoint",
    "NonFiniteWarning",
    "TensorSource",
    "TensorSpec",
    "checkpoint_from_flax",
    "checkpoint_from_torch",
    "checkpoint_to_flax",
    "checkpoint_to_torch",
    "content_digest",
    "convert_file",
    "describe_tree",
    "diff_lines",
    "export",
    "list_keys",
    "load",
    "meta_model",
    "read_key_list",
    "read_state_dict",
    "read_variables",
    "save",
    "save_tensors",
    "tensor_source",
    "verify",
    "write_state_dict",
    "write_variables",
]
