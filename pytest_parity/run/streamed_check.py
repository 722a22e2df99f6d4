"""`assert_streamed_close`: a pair checked block by block within a memory bound, its verdict,
its record and its failure text (the first failing block, diagnosed inside)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_parity.checkpoint import Checkpoint, tensor_source
from pytest_parity.compare import problem_record, records
from pytest_parity.errors import CheckpointError, ParityError
from pytest_parity.registry import Pair, get
from pytest_parity.run.diagnosed import concluded
from pytest_parity.run.streamed import (
    DEFAULT_MEMORY,
    StreamedResult,
    UnmatchedBlock,
    image_rank,
    run_streamed,
)
from pytest_parity.run.streamed_blocks import memory_bytes
from pytest_parity.run.streamed_diagnosis import block_lines, diagnose_block
from pytest_parity.run.streamed_placement import Placement

DTYPES = ("float32", "bfloat16", "float16", "float64")


def assert_streamed_close(pair: Pair | str, inputs: Any, *,
                          checkpoint: str | Path | Checkpoint, memory: int | str = DEFAULT_MEMORY,
                          dtype: str = "float32", device: str = "cpu", mesh: Any = None,
                          shardings: Any = None, rtol: float | None = None,
                          atol: float | None = None, name: str | None = None) -> StreamedResult:
    """Check a pair that need not fit in memory: block by block, each side holding at most
    `memory` bytes of weights at once (a block that alone exceeds it is split into its
    children; one that cannot be split is held whole), every block's Flax module on the
    arguments torch's block received, then the Flax side's own chain against torch's output.

    Args:
        pair: a Pair, or a registered pair's name.
        inputs: as `LoadedPair.assert_close` takes them (torch's layout; named inputs a dict).
        checkpoint: the pair's canonical checkpoint file (or a Checkpoint in memory), read a
            block at a time; its content digest is checked once every tensor has been read.
        memory: bytes, or a size such as '512MB'.
        mesh, shardings: the Flax side sharded: a jax.sharding.Mesh and the partition spec of
            each Flax variable, `shardings(path, shape) -> PartitionSpec`.

    Raises:
        AssertionError: the failing blocks and the output, then the first failing block's
            diagnosis; a block the two sides cannot be compared on.
        CheckpointError: a damaged checkpoint (its digest is checked once the check has
            run: tensors no block read are read and hashed then), tensors no rule of the
            mapping names, or tensors that do not fit the model.
    """
    __tracebackhide__ = True
    pair = get(pair) if isinstance(pair, str) else pair
    pair.check_inputs(inputs)
    if dtype not in DTYPES:
        raise ParityError(f"streamed check {pair.name}: dtype={dtype!r}; one of "
                          f"{', '.join(DTYPES)}")
    bound = memory_bytes(memory)
    placement = Placement(device, mesh, shardings)
    tolerance = {**pair.tolerance(dtype), **{key: value for key, value in
                                              (("rtol", rtol), ("atol", atol))
                                              if value is not None}}
    source = tensor_source(checkpoint, pair.name)
    try:
        unnamed = [key for key in source.paths() if pair.mapping.rule_for(key) is None]
        if unnamed:
            raise CheckpointError(source.where, [f"{key}: no rule of the pair's mapping "
                                                 "names this tensor" for key in unnamed])
        try:
            result, (torch_stream, flax_stream) = run_streamed(
                pair, inputs, source, memory=bound, dtype=dtype, device=device,
                placement=placement, tolerance=tolerance, name=name or pair.name)
        except UnmatchedBlock as unmatched:
            records.emit(problem_record(name or pair.name, unmatched.message))
            raise
        source.verify()  # the blocks were judged on what the file holds: is it intact?
        rank = image_rank(pair)

        def diagnosis() -> Any:
            failing = result.first_failing
            if failing is None:
                return None
            with placement.inside():
                found = diagnose_block(failing.block, torch_stream, flax_stream, pair.mapping,
                                       tolerance, rank)
            return _Lines(block_lines(failing.block, found), found)

        concluded(result.comparison(), diagnosis, record=_record(result, pair.name, bound))
    finally:
        source.close()
    return result


def _record(result: StreamedResult, pair: str, bound: int) -> Any:
    first = result.first_failing
    return result.comparison().to_record().with_fields(pair=pair, streamed={
        "memory": bound, "largest_block_bytes": result.largest_block_bytes,
        "blocks": [{"torch": b.block.torch, "flax": b.block.flax, "bytes": b.block.nbytes,
                    "margin": b.comparison.margin, "passed": b.passed} for b in result.blocks],
        "first_failing_block": first.block.torch if first else None,
        "output_margin": result.output.margin})


class _Lines:
    """A block's diagnosis as `concluded` takes one: its lines, its record."""

    def __init__(self, lines: list[str], found: Any) -> None:
        self._lines, self.found = lines, found

    def lines(self) -> list[str]:
        return self._lines

    def to_record(self) -> dict[str, Any]:
        return self.found.to_record() if self.found is not None else {}
