import json
import re

import numpy as np

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
    assert texts[1] == "FAILED tests/t.py (1)" and texts[2].split()[-2:] == ["b", "FAIL"]
    assert texts[3] == "tests/t.py (2)"
    assert [text.split()[-2] for text in texts[4:6]] == ["c::probs", "a"]
    assert texts[6] == "3 comparisons, 1 failed, worst margin 3 (b)"
    assert texts[7].startswith("margin = |a - e| / (atol + rtol*|e|), <= 1 passes")
    assert [failed for _, failed in lines] == [False, True, True, False, False, False, True,
                                               False]


def test_figures_are_right_aligned_in_fixed_columns():
    lines = format_table([_record("tests/t.py::a", 0.1), _record("tests/t.py::b", 12.5)])
    header, _, first, second = (text for text, _ in lines[:4])
    assert first.split()[:5] == ["float32", "1.25e-4", "1.00e-6", "1.3e-6/1e-5", "12.5"]
    assert second.split()[:5] == ["float32", "1.00e-6", "1.00e-6", "1.3e-6/1e-5", "0.1"]
    for column in ("max abs", "max rel", "rtol/atol", "margin"):  # each figure ends under it
        end = header.index(column) + len(column)
        assert first[end - 1] != " " and first[end] == " " and second[end] == " "


# Node ids modelled on the longest of a real run: the zoo's, the catalogue's (a function of
# many rows gets a heading of its own) and the training bugs' (long names, no parameters).
LONG_IDS = [
    "tests/zoo/test_zoo_golden.py::test_torchvision_and_flax_match_the_golden_logits"
    "[cpu-float32-resnet152]",
    "tests/parity/test_layer_catalogue_nnx.py::test_conv_transpose2d_mapping_flips_the_kernel"
    "[cpu-bfloat16]",
    "tests/zoo/test_training_bugs.py::test_batch_norm_momentum_ported_as_0_1_fails_after_one_step"
    "[cpu-float32]",
]
NAMES = ["resnet152 photo: flax vs golden",
         "test_conv_transpose2d_mapping_flips_the_kernel: worst of 12 examples, 6 compilations",
         "resnet18: 1 training step, the optimizer's state and every buffer"]


def _long_records():
    records = []
    for index in range(30):
        test = LONG_IDS[index % 3]
        records.append({**_record(test, 0.01 * index, name=NAMES[index % 3]),
                        "dtype": "bfloat16" if "bfloat16" in test else "float32",
                        "rtol": 1.3e-06, "atol": 2.5e-05, "max_abs": 1.5e+3 * index,
                        "max_rel": 1e-3})
    records[8].update(margin=1.9e6, passed=False)  # a training bug, caught
    records[4].update(max_rel=float("inf"), margin=float("inf"), passed=False,
                      problem="outputs: shapes differ")  # nothing compared: no figures
    records[3]["max_rel"] = 0.0  # every differing element was expected 0
    return records


def test_the_table_fits_120_columns_and_cuts_names_never_figures():
    lines = format_table(_long_records())
    texts = [text for text, _ in lines]
    assert max(len(text) for text in texts) <= 120
    assert texts[1:5] == [
        "FAILED tests/parity/test_layer_catalogue_nnx.py (1)", texts[2],
        "FAILED tests/zoo/test_training_bugs.py (1)", texts[4]]
    assert [red for _, red in lines[1:5]] == [True] * 4 and not any(
        red for _, red in lines[5:-2])
    assert texts[2].split()[:5] == ["bfloat16", "-", "-", "-", "-"] and "FAIL" in texts[2]
    figures = texts[4].split()[:5]
    assert figures == ["float32", "1.20e+4", "1.00e-3", "1.3e-6/2.5e-5", "1.9e+6"]
    # the name was cut (the test's middle, the comparison's end), the figures were not
    assert texts[4].endswith("  test_batch_norm_momen…_fails_after_one_step::resnet18: 1 tra…"
                             "  FAIL")
    heading = ("tests/zoo/test_zoo_golden.py::test_torchvision_and_flax_match_the_golden_logits"
               " (10)")
    assert heading in texts  # its rows need not repeat the function
    row = texts[texts.index(heading) + 1]
    assert re.split(" {2,}", row.strip())[-2:] == ["[resnet152]::photo: flax vs golden", "PASS"]
    assert len(row) == len(texts[4]) == 120  # every verdict in one column
    assert texts[-2].startswith("30 comparisons, 2 failed, worst margin inf (test_conv_transpose"
                                "2d_mapping_flips_the_kernel::worst of 12 examples")
    assert texts[-2].endswith("…)") and lines[-2][1] is True
    assert not any("inf" in text for text in texts[:-2])


def test_verbose_prints_whole_names():
    wide = [text for text, _ in format_table(_long_records(), width=None)]
    assert max(len(text) for text in wide) > 120 and not any("…" in text for text in wide)
    assert any(text.endswith("test_batch_norm_momentum_ported_as_0_1_fails_after_one_step"
                             "::resnet18: 1 training step, the optimizer's state and every "
                             "buffer  FAIL") for text in wide)


def test_a_passing_comparison_never_shows_an_infinite_relative_error():
    """Relative error is defined only where the expected value is not 0 (compare's max_rel);
    an output of exact zeros matched within atol has none."""
    from pytest_parity.compare import compare

    result = compare(np.array([0.0, 1e-7, 1.0], np.float32), np.array([0.0, 0.0, 1.0], np.float32))
    assert result.passed and result.max_rel == 0.0 and result.max_abs > 0
    record = {**_record("tests/t.py::zeros", result.margin), "max_rel": result.max_rel}
    assert "inf" not in "\n".join(text for text, _ in format_table([record]))
    old = {**record, "max_rel": float("inf")}  # as a report from before the definition
    assert format_table([old])[2][0].split()[2] == "-"


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
