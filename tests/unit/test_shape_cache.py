"""The Flax shapes kept on disk between runs: read back instead of traced, a new file when the
port's source changes, and never a false error from a stale file."""

import json
import os
from pathlib import Path

import pytest

from pytest_parity.checkpoint import convert, shape_cache
from pytest_parity.errors import CheckpointError
from tests.support import tinynet
from tests.support.tinynet import TINYNET

pytest.importorskip("torch")
pytest.importorskip("flax")


@pytest.fixture
def traces(tmp_path, monkeypatch):
    """Shapes kept in tmp_path, this process's caches emptied around the test; the list
    grows by one each time the Flax module's init is traced."""
    from pytest_parity.checkpoint import flax_variables

    real, calls = flax_variables.expected_variables, []

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(flax_variables, "expected_variables", counted)
    convert.forget_models()
    shape_cache.keep_in(tmp_path)
    yield calls
    shape_cache.keep_in(None)
    convert.forget_models()


def _checkpoint():
    from pytest_parity.run import checkpoint_for

    return checkpoint_for(TINYNET, 0, None)


def test_shapes_are_traced_once_then_read_from_disk(traces, tmp_path):
    traced = convert.flax_spec(TINYNET)
    assert len(traces) == 1 and len(list(tmp_path.glob("tinynet-*.json"))) == 1
    convert.forget_models()  # as a new process starts
    assert convert.flax_spec(TINYNET) == traced
    assert len(traces) == 1, "the shapes were traced again where the file holds them"


def test_a_stale_file_never_fails_a_good_checkpoint_and_a_bad_one_still_fails(traces, tmp_path):
    checkpoint = _checkpoint()
    convert.flax_spec(TINYNET)
    (kept,) = tmp_path.glob("tinynet-*.json")
    shapes = json.loads(kept.read_text())
    shapes["params/conv1/kernel"][0] = [9, 9, 9, 9]  # as if the port had changed since
    kept.write_text(json.dumps(shapes))
    convert.forget_models()

    variables = convert.checkpoint_to_flax(checkpoint, TINYNET)  # traced again, passes
    assert variables["params"]["conv1"]["kernel"].shape != (9, 9, 9, 9)
    assert len(traces) == 2
    broken = type(checkpoint)(checkpoint.architecture, {
        **checkpoint.arrays, "conv1/kernel": checkpoint.arrays["conv1/kernel"][:1]},
        checkpoint.layouts, checkpoint.source)
    with pytest.raises(CheckpointError, match="conv1/kernel"):
        convert.checkpoint_to_flax(broken, TINYNET)


def test_editing_the_ports_source_makes_a_new_file(traces, tmp_path):
    convert.flax_spec(TINYNET)
    source = Path(tinynet.__file__)
    status = source.stat()
    try:
        os.utime(source, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))
        convert.forget_models()
        convert.flax_spec(TINYNET)
    finally:
        os.utime(source, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert len(traces) == 2 and len(list(tmp_path.glob("tinynet-*.json"))) == 2
