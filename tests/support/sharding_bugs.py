"""Sharding bugs of the tensor-parallel Llama port (models/llama/sharded.py).

Each bug swaps one of the port's sharding conventions (a module-level function of
models.llama.sharded) for a plausible wrong one, inside `with sharding_bug(name):`, and
restores it on leaving. A jitted function traced inside the block sees the bug; one traced
before it does not (jit anew inside). The unsharded port (models/llama/nnx_model.py) calls
none of these functions: it is the reference the buggy sharded port is held to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import jax
import pytest

from models.llama import sharded


def _row_parallel_without_psum(inputs: Any, kernel: Any) -> Any:
    """Each device's partial product declared replicated, never summed. shard_map's
    replication check (check_vma) refuses the missing psum while tracing, so a port with this
    bug has turned the check off."""
    return jax.shard_map(lambda inputs_shard, kernel_shard: inputs_shard @ kernel_shard,
                         in_specs=(sharded.sharded_last_axis(inputs.ndim), sharded.ROWS_SHARDED),
                         out_specs=sharded.REPLICATED, check_vma=False)(inputs, kernel)


def _interleaved_head_blocks(flat: Any, head_dim: int, devices: int) -> Any:
    """Device d holds heads d, d + n, d + 2n, ... (n devices), while its q_proj columns and
    o_proj rows are the contiguous block d."""
    batch, length, _ = flat.shape
    return (flat.reshape(batch, length, -1, devices, head_dim),
            jax.sharding.PartitionSpec(None, None, None, sharded.MODEL_AXIS, None))


class Injection(NamedTuple):
    description: str
    attribute: str
    replacement: Callable[..., Any]


INJECTIONS = {
    "row_parallel_without_psum": Injection(
        "o_proj and down_proj multiply each device's input shard by its kernel rows and skip "
        "the psum: the reduction sharded without its collective", "row_parallel",
        _row_parallel_without_psum),
    "heads_interleaved_across_devices": Injection(
        "the shard_map over heads gives device d heads d, d + n, ... in place of its "
        "contiguous block (the one its q_proj columns and o_proj rows hold)", "head_blocks",
        _interleaved_head_blocks),
}
BUGS = {name: injection.description for name, injection in INJECTIONS.items()}


@contextmanager
def sharding_bug(name: str) -> Iterator[None]:
    """The sharded Llama port with the bug `name` (one of BUGS) while the block runs."""
    injection = INJECTIONS[name]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sharded, injection.attribute, injection.replacement)
        yield
