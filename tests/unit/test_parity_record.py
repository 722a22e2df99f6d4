"""The typed record: the same JSON as the dicts it replaced, and plain data across xdist."""

import json
import math
import pickle

import numpy as np

from pytest_parity.compare import ParityRecord, compare, problem_record

CORE = ["name", "leaves", "failing_leaves", "worst_leaf", "shape", "actual_dtype",
        "expected_dtype", "max_abs", "max_rel", "worst_index", "max_abs_index", "rtol", "atol",
        "tolerance_from", "n_failing", "size", "n_masked", "n_valid", "n_masked_positions",
        "margin", "passed", "budget"]


def test_a_comparison_record_has_the_report_fields_in_order():
    record = compare(np.ones(3, np.float32), np.ones(3, np.float32), name="out").to_record()
    assert isinstance(record, ParityRecord)
    assert list(record.to_dict()) == [*CORE, "device", "dtype", "test"]
    assert (record["name"], record.passed, record.kind) == ("out", True, "outputs")


def test_a_problem_record_keeps_its_problem_where_it_was():
    record = problem_record("logits", "shapes differ")
    assert list(record) == [*(k for k in CORE if k != "max_abs_index"), "problem", "device",
                            "dtype", "test"]
    assert record.problem == "shapes differ" and math.isinf(record.margin)
    assert "problem" not in record.without("problem")


def test_fields_it_has_no_slot_for_go_in_order_after_the_figures():
    record = problem_record("x", "").without("problem").with_fields(
        kind="gradients", examples=3, name="x: gradients", passed=True)
    placed = record.with_fields(device="cpu", dtype=None).with_fields(test="t.py::a")
    written = placed.to_dict()
    assert list(written)[-5:] == ["kind", "examples", "device", "dtype", "test"]
    assert (written["name"], written["passed"], written["dtype"]) == ("x: gradients", True, None)


def test_the_round_trip_through_a_plain_dict_is_exact():
    """xdist carries user_properties as plain data: the plugin sends `to_dict`."""
    record = compare(np.ones(2), np.zeros(2), name="o").to_record().with_fields(
        diagnosis={"modules": []}, device="cpu", dtype="float32")
    sent = record.to_dict()
    assert type(sent) is dict and json.loads(json.dumps(sent)) == sent
    assert ParityRecord.from_dict(sent) == record
    assert pickle.loads(pickle.dumps(record)) == record
    assert record.diagnosis == {"modules": []} and dict(record) == sent
