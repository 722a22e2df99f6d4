"""A pair's inputs: one image batch, or several named inputs (token ids, an attention mask...).

A registered pair declares what its models take. An image model takes one positional batch
(NCHW for torch, NHWC for Flax); a text model takes keyword arguments, each an `Input` with a
name, an example shape, a dtype, a value range, and whether it is the attention mask. Both
sides are called with the same names: `torch_model(**inputs)`, `module.apply(variables,
**inputs)`. At run time a batch is an array (one positional input) or a dict of arrays by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_parity.errors import ParityError
from pytest_parity.layouts import Layout


class InputError(ParityError):
    """Inputs that do not fit what a pair declares: a name missing or unknown, a rank or a
    dtype kind other than declared, a shared dimension given unlike, a value out of range."""


@dataclass(frozen=True)
class Input:
    """One named input of a pair.

    `shape` is the torch shape of the example batch (used to trace the Flax module and to draw
    examples); `dtype` its numpy dtype name; integer inputs draw values in [low, high) (`high`:
    the vocabulary size of token ids); a `mask` input is the attention mask: 1 where a position
    is real, 0 where it is padding (drawn with padding at the end of each row). `strategy`,
    where given, is a callable returning a hypothesis strategy of this input's arrays.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    low: int = 0
    high: int | None = None
    mask: bool = False
    layout: Layout = Layout.SAME
    strategy: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        problem = _declaration_problem(self)
        if problem:
            raise InputError(f"Input({self.name!r}): {problem}")

    @property
    def integer(self) -> bool:
        return np.issubdtype(np.dtype(self.dtype), np.integer)

    def describe(self) -> str:
        what = " (attention mask)" if self.mask else ""
        values = f", values in [{self.low}, {self.high})" if self.high is not None else ""
        return f"{self.name} {self.shape} {self.dtype}{values}{what}"

    def example(self, rng: np.random.Generator) -> np.ndarray:
        """An example array of this input, drawn from `rng`."""
        if self.mask:
            return padding_mask(self.shape, rng).astype(self.dtype)
        if self.integer:
            high = self.high if self.high is not None else self.low + 2
            return rng.integers(self.low, high, self.shape).astype(self.dtype)
        return rng.standard_normal(self.shape).astype(self.dtype)

    def flax_example(self) -> Any:
        """A jax.ShapeDtypeStruct of the Flax side's example (integers as jax keeps them)."""
        import jax

        dtype = np.dtype(self.dtype)
        if self.integer and not jax.config.read("jax_enable_x64"):
            dtype = np.dtype(np.int32)
        return jax.ShapeDtypeStruct(self.layout.flax_shape(self.shape), dtype)


def _declaration_problem(declared: Input) -> str | None:
    if not isinstance(declared.name, str) or not declared.name.isidentifier():
        return "the name must be a Python identifier (it is passed as a keyword argument)"
    if not (isinstance(declared.shape, tuple) and declared.shape
            and all(isinstance(n, int) and n > 0 for n in declared.shape)):
        return f"shape {declared.shape!r} must be a tuple of positive integers"
    try:
        dtype = np.dtype(declared.dtype)
    except TypeError:
        return f"dtype {declared.dtype!r} is not a numpy dtype name"
    if declared.high is not None and declared.high <= declared.low:
        return f"high={declared.high} must be above low={declared.low}"
    if declared.mask and not (np.issubdtype(dtype, np.integer) or dtype == np.bool_):
        return f"a mask is integer or bool, not {declared.dtype}"
    return None


def padding_mask(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A (batch, length) attention mask of ones with padding at the end of each row (at least
    one real position per row), as a tokenizer pads a batch of sentences of drawn lengths."""
    length = shape[-1]
    lengths = rng.integers(1, length + 1, shape[:-1])
    return (np.arange(length) < lengths[..., None]).astype(np.int64)


def check_inputs(declared: Sequence[Input], given: Any, owner: str) -> None:
    """Whether `given` (a dict of arrays by name) fits the declared inputs, checked before
    either model runs, so that a misfit is named here rather than by a gather deep in jax or
    torch.

    Dtype kinds: an input declared integer takes integers, one declared floating takes
    floats. An attention mask (integer or bool) takes integers or bools alike, as tokenizers
    and users pass either; token ids never take bools, and nothing takes floats where
    integers were declared (or the reverse). Values: an integer input declaring `high` takes
    values in [low, high) (token ids within the vocabulary); an integer mask takes 0 and 1.
    Shapes: inputs declared with one size in a dimension (the batch, the sequence length)
    must be given alike there.

    Raises:
        InputError: naming `owner` (the pair) and every input missing, unknown, of another
            rank or dtype kind, disagreeing with another in a shared dimension (both shapes
            shown), or holding a value out of range (the value, its index, and how many).
    """
    if not isinstance(given, Mapping):
        names = ", ".join(d.name for d in declared)
        raise InputError(f"{owner} takes named inputs ({names}): pass a dict of "
                         f"arrays by name, not {type(given).__name__}")
    by_name = {d.name: d for d in declared}
    problems = [f"{name}: missing (declared {d.describe()})"
                for name, d in by_name.items() if name not in given]
    problems += [f"{name}: not an input of {owner} (it takes {', '.join(by_name)})"
                 for name in given if name not in by_name]
    shapes = {}
    for d in declared:
        if d.name not in given:
            continue
        array = np.asarray(given[d.name])
        if array.ndim != len(d.shape):
            problems.append(f"{d.name}: shape {array.shape} where rank {len(d.shape)} was "
                            f"declared ({d.describe()})")
            continue
        shapes[d.name] = array.shape
        problem = _kind_problem(array, d) or _value_problem(array, d)
        if problem:
            problems.append(f"{d.name}: {problem}")
    problems += _shared_dimension_problems(declared, shapes)
    if problems:
        raise InputError(f"{owner}: inputs do not fit its declaration:\n"
                         + "\n".join(f"  - {p}" for p in problems))


def _kind_problem(array: np.ndarray, declared: Input) -> str | None:
    """A dtype kind other than declared, if so (which kinds fit: check_inputs)."""
    if array.dtype == np.bool_:
        fits = declared.mask
    elif np.issubdtype(array.dtype, np.integer):
        fits = declared.integer or declared.mask
    else:
        fits = np.issubdtype(array.dtype, np.floating) and not (declared.integer or declared.mask)
    return None if fits else f"dtype {array.dtype} where {declared.dtype} was declared"


def _value_problem(array: np.ndarray, declared: Input) -> str | None:
    """Integer values outside what the input declares: [low, high), or 0 and 1 for a mask."""
    if not np.issubdtype(array.dtype, np.integer) or array.size == 0:
        return None
    if declared.mask:
        low, high, allowed = 0, 2, "a mask holds 0 and 1"
    elif declared.high is not None:
        low, high = declared.low, declared.high
        allowed = f"declared values in [{low}, {high})"
    else:
        return None
    outside = (array < low) | (array >= high)
    if not outside.any():
        return None
    index = tuple(int(i) for i in np.argwhere(outside)[0])
    return (f"{int(outside.sum())} of {array.size} values out of range ({allowed}); the first "
            f"is {array[index]} at index {index}")


def _shared_dimension_problems(declared: Sequence[Input],
                               shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Each input given a size other than the first input declared alike in a dimension
    (same layout, same axis, same declared size) was given there."""
    first: dict[tuple[Layout, int, int], Input] = {}
    problems = []
    for d in declared:
        if d.name not in shapes:
            continue
        for axis, size in enumerate(d.shape):
            other = first.setdefault((d.layout, axis, size), d)
            if shapes[other.name][axis] != shapes[d.name][axis]:
                problems.append(f"{d.name}: shape {shapes[d.name]} where {other.name} has "
                                f"{shapes[other.name]}; dimension {axis}, declared alike "
                                f"({size}), differs")
                break
    return problems


def examples(declared: Sequence[Input], seed: int) -> dict[str, np.ndarray]:
    """One example of each declared input, drawn from a generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    return {d.name: d.example(rng) for d in declared}


def to_flax(declared: Sequence[Input], given: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Named inputs as the Flax side takes them, each in its declared layout."""
    layouts = {d.name: d.layout for d in declared}
    return {name: layouts.get(name, Layout.SAME).to_flax(value) for name, value in given.items()}


def mask_of(declared: Sequence[Input], given: Any) -> np.ndarray | None:
    """The attention mask among named inputs, where one is declared and given."""
    if not isinstance(given, Mapping):
        return None
    name = next((d.name for d in declared if d.mask), None)
    return None if name is None or name not in given else np.asarray(given[name])
