"""The report's picture (pytest_parity/report_picture.py): where it goes, how records are grouped
by model, and that it is a PNG whatever the margins."""

from functools import partial

import pytest

from pytest_parity.report_picture import _groups, axis_range, draw, model_of, picture_path

ZOO = ["resnet18", "resnet18_nnx", "minilm_l6"]


def _record(test, name, margin=0.5, passed=True, dtype="float32"):
    return {"test": test, "name": name, "device": "cpu", "dtype": dtype, "margin": margin,
            "passed": passed}


@pytest.mark.parametrize(
    ("test", "name", "known", "model"),
    [
        ("tests/zoo/test_zoo_golden.py::test_golden[cpu-float32-resnet18_nnx]",
         "resnet18_nnx photo: nnx vs golden", ZOO, "resnet18_nnx"),
        ("tests/zoo/test_training_bugs.py::test_adamw[cpu-float32]",
         "resnet18: 1 training step", ZOO, "resnet18"),
        ("tests/zoo/test_minilm.py::test_tokens[cpu-bfloat16]", "minilm_l6 outputs", ZOO,
         "minilm_l6"),
        ("tests/zoo/test_zoo_parity.py::test_logits[cpu-float32-vit_b_16]", "vit_b_16 logits",
         [], "vit_b_16"),
        ("tests/zoo/test_training_bugs.py::test_adamw[cpu-float32]",
         "resnet18: 1 training step", [], "training_bugs"),
        ("tests/parity/test_layer_catalogue.py::test_silu[cpu-bfloat16]",
         "test_silu: worst of 12 examples, 8 compilations", ZOO, "layer_catalogue"),
    ],
    ids=["registered-parameter", "registered-in-the-name", "registered-name-only",
         "parameter-under-xdist", "file-under-xdist", "catalogue-file"])
def test_each_record_is_grouped_by_the_model_it_compares(test, name, known, model):
    assert model_of(_record(test, name), known) == model


def test_the_axis_holds_every_finite_margin_and_the_tolerance_line():
    low, high = axis_range([0.0, 3e-7, 0.4, 1.9e6, float("inf"), float("nan")])
    assert low < 3e-7 and high > 1.9e6
    low, high = axis_range([0.0, 0.5])
    assert low < 1e-2 and high > 10


def test_the_picture_is_a_png_beside_the_report(tmp_path):
    pytest.importorskip("matplotlib")
    records = [_record(f"tests/zoo/test_zoo.py::test_logits[cpu-{dtype}-{model}]",
                       f"{model} logits", margin=0.05 * index, dtype=dtype)
               for index, (model, dtype) in enumerate(
                   (m, d) for m in ("resnet18", "vit_b_16") for d in ("float32", "bfloat16"))]
    records += [_record("tests/t.py::test_bug[cpu-float32]", "resnet18: 1 step", 1.9e6, False),
                _record("tests/t.py::test_shapes[cpu-float32]", "logits", float("inf"), False),
                _record("tests/t.py::test_exact[cpu-float32]", "logits", 0.0)]
    path = draw(records, picture_path(tmp_path / "report.json"),
                partial(model_of, known_models=ZOO))
    assert path == tmp_path / "report.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.png"]  # no temporary left behind


def test_a_registered_pairs_records_get_a_row_of_their_own_per_dtype():
    """Issue 29: a test parametrized by the Linen name put its NNX twin's comparisons in the
    Linen row; records that name their pair are grouped by it, the others as before."""
    test = "tests/zoo/test_twins.py::test_both_ports[cpu-float32-resnet18]"
    records = [{**_record(test, "logits"), "pair": "resnet18"},
               {**_record(test, "logits"), "pair": "resnet18_nnx"},
               {**_record(test, "logits", dtype="bfloat16"), "pair": "resnet18_nnx"},
               _record(test, "logits")]  # no pair: placed by the test's parameters
    groups = _groups(records, partial(model_of, known_models=ZOO))
    assert {row: len(members) for row, members in groups.items()} == {
        "resnet18_nnx, float32": 1, "resnet18_nnx, bfloat16": 1, "resnet18, float32": 2}
