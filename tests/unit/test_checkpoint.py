import warnings

import h5py
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytest_parity.checkpoint import (
    Checkpoint,
    NonFiniteWarning,
    TensorSpec,
    load,
    save,
    verify,
)
from pytest_parity.checkpoint.format import FORMAT_VERSION
from pytest_parity.errors import CheckpointError

DTYPES = ["float16", "bfloat16", "float32", "float64", "int64"]


def _small_checkpoint():
    arrays = {
        "conv1/kernel": np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4),
        "bn1/mean": np.linspace(-1, 1, 4, dtype=np.float32),
        "head/bias": np.array([0.5, -0.25], dtype=ml_dtypes.bfloat16),
    }
    layouts = {"conv1/kernel": "HWIO", "bn1/mean": "C", "head/bias": "O"}
    return Checkpoint("tinynet", arrays, layouts, source="test")


def _specs(checkpoint):
    return {name: TensorSpec(tuple(a.shape), str(a.dtype), checkpoint.layouts[name])
            for name, a in checkpoint.arrays.items()}


@st.composite
def trees(draw, depth=0):
    """Canonical paths of a random tree of groups, with arrays of the format's dtypes."""
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True),
                          min_size=1, max_size=4, unique=True))
    arrays = {}
    for name in names:
        if depth < 3 and draw(st.booleans()):
            arrays.update({f"{name}/{k}": v for k, v in draw(trees(depth=depth + 1)).items()})
        else:
            dtype_name = draw(st.sampled_from(DTYPES))
            shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
            if dtype_name == "int64":
                arrays[name] = draw(hnp.arrays(np.int64, shape))
            else:
                # Values exact in every float dtype, and the special ones that must survive too.
                values = st.integers(-100, 100).map(lambda v: v / 4) | st.sampled_from(
                    [np.nan, np.inf, -np.inf, -0.0])
                arrays[name] = draw(hnp.arrays(np.float32, shape, elements=values)).astype(
                    ml_dtypes.bfloat16 if dtype_name == "bfloat16" else dtype_name)
    return arrays


@given(arrays=trees())
def test_random_trees_read_back_exactly(tmp_path_factory, arrays):
    path = tmp_path_factory.mktemp("trees") / "tree.h5"
    layouts = {name: f"L{array.ndim}" for name, array in arrays.items()}
    save(path, Checkpoint("random", arrays, layouts))
    restored = load(path, architecture="random")
    assert restored.arrays.keys() == arrays.keys()
    for name, array in arrays.items():
        read = restored.arrays[name]
        assert (read.dtype, read.shape) == (array.dtype, array.shape), name
        assert read.tobytes() == np.ascontiguousarray(array).tobytes(), name
    assert restored.layouts == layouts
    assert restored.digest() == Checkpoint("random", arrays, layouts).digest()


def test_root_group_attributes_and_layouts_follow_the_format(tmp_path):
    path = save(tmp_path / "tiny.h5", _small_checkpoint())
    with h5py.File(path) as h5:
        assert list(h5.keys()) == ["tinynet"]
        assert h5.attrs["format"] == "pytest-parity-checkpoint"
        assert h5.attrs["format_version"] == FORMAT_VERSION
        assert h5.attrs["architecture"] == "tinynet"
        assert "h5py" in h5.attrs["written_by"]
        assert h5["tinynet/conv1/kernel"].attrs["layout"] == "HWIO"
        assert h5["tinynet/head/bias"].attrs["dtype"] == "bfloat16"  # never upcast
        assert h5["tinynet/head/bias"].dtype == np.uint16


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    path = save(tmp_path / "tiny.h5", _small_checkpoint())
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="the file exists; pass overwrite=True"):
        save(path, Checkpoint("other", {"x": np.zeros(1)}, {"x": "C"}))
    assert path.read_bytes() == before
    save(path, Checkpoint("other", {"x": np.zeros(1)}, {"x": "C"}), overwrite=True)
    assert load(path).architecture == "other"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.h5"]  # no temporary left


def test_unwritable_checkpoint_lists_every_problem(tmp_path):
    bad = Checkpoint("net", {"a": np.zeros(2), "a/b": np.zeros(1), "c": np.zeros(1, "complex64")},
                     {"a": "C", "a/b": "C", "gone": "C"})
    with pytest.raises(CheckpointError) as error:
        save(tmp_path / "bad.h5", bad)
    message = str(error.value)
    assert "4 problems" in message
    for expected in ("c: dtype complex64", "c: no layout declared", "gone: layout declared",
                     "a: is both a tensor and a group"):
        assert expected in message
    assert not (tmp_path / "bad.h5").exists()


def test_wrong_architecture_is_named(tmp_path):
    path = save(tmp_path / "tiny.h5", _small_checkpoint())
    with pytest.raises(CheckpointError, match="architecture 'tinynet' where 'resnet50' was"):
        load(path, architecture="resnet50")


def test_verify_lists_missing_unexpected_misshaped_and_mistyped_together():
    checkpoint = _small_checkpoint()
    expected = _specs(checkpoint)
    expected["fc/kernel"] = TensorSpec((4, 2), "float32", "IO")
    expected["conv1/kernel"] = TensorSpec((4, 3, 2, 2), "float32", "OIHW")
    expected["bn1/mean"] = TensorSpec((4,), "float64", "C")
    del expected["head/bias"]
    with pytest.raises(CheckpointError) as error:
        verify(checkpoint, expected, path="tiny.h5")
    assert error.value.problems == [
        "fc/kernel: missing (expected (4, 2) float32, layout IO)",
        "head/bias: unexpected key (shape (2,))",
        "bn1/mean: dtype float32 where float64 was expected",
        "conv1/kernel: shape (2, 2, 3, 4) layout HWIO where (4, 3, 2, 2) layout OIHW was expected",
    ]


def test_verify_warns_about_non_finite_values():
    checkpoint = _small_checkpoint()
    checkpoint.arrays["bn1/mean"][1] = np.nan
    with pytest.warns(NonFiniteWarning, match=r"tiny.h5: bn1/mean: 1 of 4 values are NaN or Inf"):
        verify(checkpoint, _specs(checkpoint), path="tiny.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verify(_small_checkpoint(), _specs(_small_checkpoint()))


def _diff(a, b):
    from pytest_parity.checkpoint.inspection import diff_lines

    return diff_lines(a, b)


def test_diff_lists_only_what_differs_with_a_count():
    a = _small_checkpoint()
    b = _small_checkpoint()
    b.arrays["bn1/mean"] = b.arrays["bn1/mean"] + 1
    lines, differ = _diff(a, b)
    assert differ
    assert lines == ["bn1/mean: max abs difference 1.000e+00",
                     "1 of 3 tensors differ; 2 identical", "checkpoints differ"]
    assert _diff(a, _small_checkpoint()) == (
        ["0 of 3 tensors differ; 3 identical", "checkpoints are identical"], False)


def test_diff_reports_a_layout_or_architecture_that_alone_differs():
    a = _small_checkpoint()
    b = _small_checkpoint()
    b.layouts["conv1/kernel"] = "OIHW"
    b.architecture = "othernet"
    lines, differ = _diff(a, b)
    assert differ
    assert lines == ["architecture: 'tinynet' vs 'othernet'", "conv1/kernel: layout HWIO vs OIHW",
                     "1 of 3 tensors differ; 2 identical", "checkpoints differ"]


def test_diff_tells_bits_that_differ_from_equal_numbers():
    a = _small_checkpoint()
    b = _small_checkpoint()
    a.arrays["bn1/mean"][0], b.arrays["bn1/mean"][0] = 0.0, -0.0
    lines, differ = _diff(a, b)
    assert differ and lines[0] == "bn1/mean: max abs difference 0.000e+00 (the bits differ)"
