from functools import partial

import numpy as np
import pytest

from pytest_parity.cli import main


def test_env_prints_versions_and_devices_of_both_frameworks(capsys):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    assert main(["env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("torch 2.") and "devices cpu" in line for line in lines)
    assert any(line.startswith("torchvision 0.") for line in lines)
    assert any(line.startswith("jax 0.") and "cpu:0" in line for line in lines)


def test_unknown_verb_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def _write(path, arrays):
    from pytest_parity.checkpoint import Checkpoint, save

    return save(path, Checkpoint("tinynet", arrays, {name: "C" for name in arrays}))


def test_inspect_shows_tree_layouts_and_totals(tmp_path, capsys):
    path = _write(tmp_path / "a.h5", {"layer1/conv/kernel": np.zeros((3, 3, 2, 4), np.float32),
                                      "fc/bias": np.zeros(10, np.float16)})
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("tinynet  (source: unknown, digest ")
    assert out[1:] == ["  fc/", "    bias  [10] float16 C", "  layer1/", "    conv/",
                       "      kernel  [3, 3, 2, 4] float32 C",
                       "2 tensors, 82 values, 308 B"]
    assert main(["inspect", "--keys", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "fc/bias [10] float16", "layer1/conv/kernel [3, 3, 2, 4] float32"]


def test_diff_reports_differences_and_exits_1(tmp_path, capsys):
    a = _write(tmp_path / "a.h5", {"w": np.zeros(3, np.float32), "only_a": np.zeros(1)})
    b = _write(tmp_path / "b.h5", {"w": np.array([0, 0.5, 0], np.float32), "only_b": np.zeros(1)})
    assert main(["diff", str(a), str(b)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "missing in B: only_a", "extra in B: only_b",
        "w: max abs difference 5.000e-01", "3 of 3 tensors differ; 0 identical",
        "checkpoints differ"]
    assert main(["diff", str(a), str(a)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "0 of 2 tensors differ; 2 identical", "checkpoints are identical"]


def test_bad_file_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    (tmp_path / "x.h5").write_text("nope")
    assert main(["inspect", str(tmp_path / "x.h5")]) == 2
    assert capsys.readouterr().err.startswith(f"[parity] {tmp_path / 'x.h5'}: 1 problem")


def test_trace_finds_nothing_on_a_correct_pair_and_exits_0(capsys):
    pytest.importorskip("torch")
    pytest.importorskip("flax")
    from tests.support.tinynet import TINYNET

    assert main(["trace", TINYNET.name]) == 0
    out = capsys.readouterr().out
    assert "tinynet on cpu in float32, input random: no module diverges" in out
    assert "weight audit: nothing differs" in out and "first divergent module: none" in out


def test_trace_names_the_culprit_and_exits_1(capsys):
    pytest.importorskip("torch")
    pytest.importorskip("flax")
    from pytest_parity import registry
    from tests.support.tinynet import MAPPING, flax_tinynet, torch_tinynet

    keras_epsilon = partial(flax_tinynet, epsilon=1e-3)  # Keras' BatchNorm epsilon
    registry.register(registry.Pair("tinynet_keras_epsilon", torch_tinynet, keras_epsilon,
                                    MAPPING, (2, 3, 8, 8)))
    assert main(["trace", "tinynet_keras_epsilon", "--seed", "3"]) == 1
    out = capsys.readouterr().out
    assert "the outputs differ" in out
    assert "torch bn1 <-> flax bn1: epsilon: torch 1e-05, flax 0.001" in out
    assert "first divergent module: torch bn1 <-> flax bn1" in out


def test_trace_exits_0_where_only_training_differs(capsys):
    """BatchNorm's momentum weighs only the running statistics' updates: a port of the wrong
    momentum computes the same outputs in eval mode, so the trace has nothing to report."""
    pytest.importorskip("torch")
    pytest.importorskip("flax")
    from pytest_parity import registry
    from tests.support.tinynet import MAPPING, flax_tinynet, torch_tinynet

    keras_momentum = partial(flax_tinynet, momentum=0.99)  # Keras' default
    registry.register(registry.Pair("tinynet_keras_bn", torch_tinynet, keras_momentum,
                                    MAPPING, (2, 3, 8, 8)))
    assert main(["trace", "tinynet_keras_bn"]) == 0
    out = capsys.readouterr().out
    assert "settings audit: nothing differs" in out and "momentum" not in out


def test_a_failing_diagnosis_is_one_line_and_exit_status_2(monkeypatch, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("flax")
    from pytest_parity.run.loaded import LoadedPair
    from tests.support.tinynet import TINYNET

    def diagnose(self, inputs):
        raise TypeError("__init__() got an unexpected keyword argument 'deterministic'")

    monkeypatch.setattr(LoadedPair, "diagnose", diagnose)
    assert main(["trace", TINYNET.name]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "[parity] tinynet: no diagnosis: it failed with TypeError: __init__() got an "
        "unexpected keyword argument 'deterministic'"]
    assert captured.out == ""
