import json

from pytest_parity.report import SCHEMA, format_table, write_json


def _record(test, margin, passed=True, name="output"):
    return {"test": test, "name": name, "device": "cpu", "dtype": None,
            "actual_dtype": "float32", "max_abs": margin * 1e-5, "max_rel": 1e-6,
            "rtol": 1.3e-6, "atol": 1e-5, "margin": margin, "passed": passed}


def test_table_lists_worst_margin_first():
    lines = format_table([_record("t::a", 0.1), _record("t::b", 3.0, passed=False),
                          _record("t::c", 0.5, name="probs")])
    assert lines[0].split() == ["test", "device", "dtype", "max", "abs", "max", "rel", "rtol",
                                "atol", "from", "margin", "verdict"]
    assert [line.split()[0] for line in lines[1:]] == ["t::b", "t::c::probs", "t::a"]
    assert lines[1].split()[-1] == "FAIL" and lines[3].split()[-1] == "PASS"


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
