"""The blocks of a streamed check: the modules whose weights are loaded, run and let go one at
a time, each a torch module and the Flax module holding the same weights.

From the torch model's root down, a module whose weights exceed the memory bound is split
into its children that hold weights (a Llama: the embeddings, each decoder layer, the final
norm, the head); one that fits, or has no children to split into, is a block. The weights a
split module holds itself, outside its children, are loaded once and kept ("loose"). Each
block's Flax module is the one holding exactly its canonical tensors (the diagnosis' module
alignment, pytest_parity.diagnose.aligned_modules).
"""

from __future__ import annotations

import ctypes
import functools
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pytest_parity.diagnose import aligned_modules
from pytest_parity.errors import ParityError
from pytest_parity.mapping import Mapping, Rule

# Never called themselves: their children are, one by one.
CONTAINERS = ("ModuleList", "ModuleDict")
# torch modules whose forward reads a child's weights without calling the child (its hooks
# never fire): never split. nn.MultiheadAttention reads out_proj.weight.
READS_CHILDREN_WEIGHTS = ("MultiheadAttention",)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20,
          "gib": 2**30}


def memory_bytes(memory: int | str) -> int:
    """A memory bound given as bytes or as text ('512MB', '1.5GiB').

    Raises:
        ParityError: text that is not a size, or a bound that is not positive.
    """
    if isinstance(memory, int) and not isinstance(memory, bool):
        size = memory
    else:
        match = _SIZE.match(str(memory))
        if match is None:
            raise ParityError(f"memory={memory!r}: give bytes (an int) or a size such as "
                              "'512MB' or '2GiB'")
        size = int(float(match.group(1)) * _UNITS[(match.group(2) or "B").lower()])
    if size <= 0:
        raise ParityError(f"memory={memory!r}: the bound must be positive")
    return size


@dataclass(frozen=True)
class Block:
    """A torch module and its Flax counterpart, loaded and run together."""

    torch: str  # module name ('model.layers.3')
    flax: str  # module path ('model/layers/3')
    torch_keys: tuple[str, ...]  # its state dict's keys, full names
    canonical: tuple[str, ...]  # the canonical tensors they map to
    nbytes: int  # its torch tensors' bytes in the checkpoint's dtype


def _key_bytes(model: Any) -> dict[str, int]:
    return {key: tensor.numel() * tensor.element_size()
            for key, tensor in model.state_dict(keep_vars=True).items()}


def tied_groups(model: Any) -> list[list[str]]:
    """The names of each parameter the model holds under several names (a head tied to the
    embeddings: GPT-2's lm_head.weight is transformer.wte.weight)."""
    names: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(parameter), []).append(name)
    return [group for group in names.values() if len(group) > 1]


def _under(key: str, module: str) -> bool:
    return not module or key.startswith(f"{module}.")


def _split(model: Any, name: str, sizes: dict[str, int], bound: int) -> list[str]:
    module = model.get_submodule(name) if name else model
    held = sum(size for key, size in sizes.items() if _under(key, name))
    children = [f"{name}.{child}" if name else child for child, _ in module.named_children()]
    children = [child for child in children if any(_under(key, child) for key in sizes)]
    # A ModuleList or ModuleDict is never called itself: its children are run one by one.
    container = type(module).__name__ in CONTAINERS
    whole = type(module).__name__ in READS_CHILDREN_WEIGHTS
    if (held <= bound and not container) or not children or whole:
        return [name]
    return [block for child in children for block in _split(model, child, sizes, bound)]


def _outermost_alike(model: Any, name: str, sizes: dict[str, int]) -> str:
    """The outermost module holding exactly the weights `name` holds: a wrapper and its one
    weighted child are one block, named as the wrapper (whose Flax counterpart the alignment
    pairs first: torchvision ViT's `heads` around `heads.head`)."""
    held = {key for key in sizes if _under(key, name)}
    while name:
        parent = name.rpartition(".")[0]
        module = model.get_submodule(parent) if parent else model
        if {key for key in sizes if _under(key, parent)} != held or \
                type(module).__name__ in CONTAINERS:
            break
        name = parent
    return name


def plan_blocks(model: Any, mapping: Mapping, bound: int) -> tuple[list[Block], tuple[str, ...]]:
    """The blocks of the torch model (its parameters on the meta device) under `bound` bytes,
    in module order, and the loose keys (held by split modules themselves).

    Raises:
        ParityError: a block whose weights no one Flax module holds.
    """
    everything = _key_bytes(model)
    # A tied parameter is needed wherever one of its names runs: loaded once, kept (loose).
    tied = {name for group in tied_groups(model) for name in group}
    sizes = {key: size for key, size in everything.items() if key not in tied}
    names = _split(model, "", sizes, bound)
    correspondence = mapping.correspondence(sizes)
    flax_of = {pair.torch: pair.flax for pair in aligned_modules(mapping, sizes)}
    blocks: list[Block] = []
    covered: set[str] = set()
    for name in (_outermost_alike(model, found, sizes) for found in names):
        keys = tuple(key for key in sizes if _under(key, name))
        covered.update(keys)
        if name not in flax_of:
            raise ParityError(f"streamed check: the torch module {name or '(root)'} holds "
                              "weights that no one Flax module holds alone (the Flax side "
                              "keeps them in other modules, or the mapping is incomplete)")
        canonical = tuple(path for key in keys if key in correspondence
                          for path in correspondence[key][0])
        blocks.append(Block(name, flax_of[name], keys, canonical,
                            sum(sizes[key] for key in keys)))
    return blocks, tuple(key for key in everything if key not in covered)


def block_mapping(mapping: Mapping, block: Block) -> Mapping:
    """The pair's mapping seen from inside the block: each of its torch keys and canonical
    paths without the block's prefix (the diagnosis of the block alone uses it)."""
    torch_prefix = f"{block.torch}." if block.torch else ""
    flax_prefix = f"{block.flax}/" if block.flax else ""
    rules = []
    for key, (paths, layout, collection, transform, split) in \
            mapping.correspondence(block.torch_keys).items():
        relative = tuple(path.removeprefix(flax_prefix) for path in paths)
        rules.append(Rule(relative if split else relative[0], key.removeprefix(torch_prefix),
                          layout, collection, transform, split))
    return Mapping(f"{mapping.architecture}:{block.torch}", tuple(rules))


def canonical_of(mapping: Mapping, keys: Iterable[str]) -> tuple[str, ...]:
    """The canonical paths the torch keys map to."""
    return tuple(path for paths, *_ in mapping.correspondence(keys).values() for path in paths)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's malloc_trim, where this process has it (None elsewhere: macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL("libc.so.6"), "malloc_trim", None)
    except OSError:
        return None


def return_freed_memory() -> None:
    """Give the memory freed so far back to the system before the next block is read.

    A block's tensors are freed when it is done, but glibc keeps freed chunks in its arenas
    (the mapping's conversions run in worker threads, each with an arena of its own), so the
    process's resident memory crept up block by block: the 2.1 GB Llama's streamed check
    peaked at 1227-1365 MB without this, 927 MB with it (tests/benchmarks/streamed_case.py).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)

