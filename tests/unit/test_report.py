import json

import numpy as np
import pytest

from pytest_parity.report import SCHEMA, format_table, write_json


def _record(test, margin, passed=True, name="output"):
    return {"test": test, "name": name, "device": "cpu", "dtype": None,
            "actual_dtype": "float32", "max_abs": margin * 1e-5, "max_rel": 1e-6,
            "rtol": 1.3e-6, "atol": 1e-5, "margin": margin, "passed": passed}


def test_table_lists_failures_first_then_each_file_worst_margin_first():
    lines = format_table([_record("tests/t.py::a", 0.1), _record("tests/t.py::b", 3.0, False),
                          _record("tests/t.py::c", 0.5, name="probs")])
    texts = [text for text, _ in lines]
    assert texts[0].split() == ["dtype", "max", "abs", "max", "rel", "rtol/atol", "margin",
                                "test::comparison", "verdict"]
    assert texts[1] == "failed (1)" and texts[2].split()[-2:] == ["b", "FAIL"]
    assert texts[3] == "tests/t.py (2)"
    assert [text.split()[-2] for text in texts[4:6]] == ["c::probs", "a"]
    assert texts[6].startswith("3 comparisons, 1 failed, worst margin 3 (b)")
    assert [failed for _, failed in lines] == [False, True, True, False, False, False, True,
                                               False]


# Node ids as long as the zoo's and the catalogue's, with their device and dtype parameters.
LONG_IDS = [
    "tests/zoo/test_zoo_golden.py::test_torchvision_and_flax_match_the_golden_logits"
    "[cpu-float32-resnet152]",
    "tests/parity/test_layer_catalogue_nnx.py::test_conv_transpose2d_mapping_flips_the_kernel"
    "[cpu-bfloat16]",
    "tests/zoo/test_minilm.py::test_classic_porting_bugs_are_detected_where_they_are"
    "[cpu-float32-layer-norm-epsilon-1e-5]",
]


def _long_records():
    records = []
    for index in range(30):
        test = LONG_IDS[index % 3]
        records.append({**_record(test, 0.01 * index, passed=index != 7,
                                  name=f"{test.partition('::')[2].partition('[')[0]}: worst of "
                                       "12 examples, 8 compilations and a long tail of words"),
                        "device": "cpu", "dtype": "bfloat16" if "bfloat16" in test else
                        "float32", "rtol": 1.3e-06, "atol": 2.5e-05, "max_abs": 1.5e+3 * index,
                        "max_rel": 0.0 if index == 3 else 1e-3})
    records[7]["margin"] = 1.9e6
    return records


def test_the_table_fits_120_columns_and_cuts_names_never_figures():
    lines = format_table(_long_records())
    assert max(len(text) for text, _ in lines) <= 120
    failed = [text for text, red in lines if red]
    assert failed[0] == "failed (1)" and failed[1].endswith("FAIL") and "1.9e+06" in failed[1]
    assert "…" in failed[1]  # the name was cut, the figures were not
    assert lines[-2][0].startswith("30 comparisons, 1 failed, worst margin 1.9e+06 (")
    wide = format_table(_long_records(), width=None)  # -v: whole names
    assert max(len(text) for text, _ in wide) > 120 and not any("…" in t for t, _ in wide)


def test_a_passing_comparison_never_shows_an_infinite_relative_error():
    """Relative error is defined only where the expected value is not 0 (compare's max_rel);
    an output of exact zeros matched within atol has none."""
    from pytest_parity.compare import compare

    result = compare(np.array([0.0, 1e-7, 1.0], np.float32), np.array([0.0, 0.0, 1.0], np.float32))
    assert result.passed and result.max_rel == 0.0
    record = {**_record("tests/t.py::zeros", result.margin), "max_rel": result.max_rel}
    assert "inf" not in "\n".join(text for text, _ in format_table([record]))


def test_the_picture_is_a_png_beside_the_report(tmp_path):
    pytest.importorskip("matplotlib")
    from pytest_parity.report_picture import draw, picture_path

    records = _long_records()
    records[0]["margin"] = 0.0  # bit for bit: at the left edge
    path = draw(records, picture_path(tmp_path / "report.json"),
                lambda record: record["test"].rpartition("-")[2].rstrip("]"))
    assert path == tmp_path / "report.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.png"]


def test_json_is_sorted_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "out" / "report.json"
    write_json(path, [_record("t::b", 1.0), _record("t::a", 2.0)])
    document = json.loads(path.read_text())
    assert document["schema"] == SCHEMA
    assert [r["test"] for r in document["records"]] == ["t::a", "t::b"]
    assert "numpy" in document["versions"]
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]


def test_json_is_strict_non_finite_figures_are_strings(tmp_path):
    """A record whose max rel error is infinite (expected 0) was written as `Infinity`, which
    strict readers (jq, JSON.parse, Go, Rust) refuse."""
    record = {**_record("t::a", float("inf"), passed=False), "max_rel": float("nan"),
              "nested": [{"low": float("-inf")}]}
    path = tmp_path / "report.json"
    write_json(path, [record])

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    (written,) = json.loads(path.read_text(), parse_constant=refuse)["records"]
    assert (written["margin"], written["max_rel"], written["nested"]) == \
        ("inf", "nan", [{"low": "-inf"}])
