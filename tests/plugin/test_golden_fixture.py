"""The `parity_golden` fixture's review semantics, as pytest-regressions has them."""

import json

import numpy as np
import pytest

TEST = """
import numpy as np

def test_logits(parity_golden):
    parity_golden.check({"logits": np.array([1.0, 2.0, 3.0]) * SCALE}, name="net")
"""


def _run(pytester, scale, *options):
    pytester.makepyfile(test_net_golden=TEST.replace("SCALE", str(scale)))
    return pytester.runpytest(*options)


@pytest.fixture(autouse=True)
def _not_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)


def _stored(pytester):
    with np.load(pytester.path / "reference_outputs" / "net.npz") as npz:
        return npz["logits"].tolist()


def test_a_missing_golden_is_written_and_the_test_fails(pytester):
    result = _run(pytester, 1)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*reference_outputs/net.npz: no golden outputs [[]'logits'[]] for "
                                 "test_net_golden.py::test_logits; written now: review and commit "
                                 "them"])
    assert _stored(pytester) == [1.0, 2.0, 3.0]
    manifest = json.loads((pytester.path / "reference_outputs" / "net.json").read_text())
    assert manifest["source"] == "pytest-parity golden fixture: test_net_golden.py::test_logits"
    assert (manifest["device"], manifest["dtype"], manifest["seed"]) == ("cpu", "float32", 0)
    _run(pytester, 1).assert_outcomes(passed=1)


def test_a_mismatch_fails_with_the_report_and_saves_the_obtained_outputs(pytester):
    _run(pytester, 1)
    result = _run(pytester, 2)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*[[]parity[]] net vs golden/logits: values are not sufficiently close",
        "*3 of 3 elements (100.00%) out of tolerance*",
        "*Obtained outputs saved to *reference_outputs/net.obtained.npz. If the new outputs "
        "are right: rerun with --parity-update-golden and review the diff.",
    ])
    assert _stored(pytester) == [1.0, 2.0, 3.0]
    with np.load(pytester.path / "reference_outputs" / "net.obtained.npz") as npz:
        assert npz["logits"].tolist() == [2.0, 4.0, 6.0]


def test_update_flag_rewrites_and_still_fails_for_review(pytester):
    _run(pytester, 1)
    result = _run(pytester, 2, "--parity-update-golden")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*reference_outputs/net.npz rewritten (--parity-update-golden)"
                                 ": review the diff and commit it."])
    assert _stored(pytester) == [2.0, 4.0, 6.0]
    _run(pytester, 2).assert_outcomes(passed=1)


def test_nothing_is_written_under_ci(pytester, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = _run(pytester, 1, "--parity-update-golden")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no golden outputs [[]'logits'[]] *; not written under CI=true*"])
    assert not (pytester.path / "reference_outputs").exists() or \
        not any((pytester.path / "reference_outputs").glob("net*"))
    monkeypatch.delenv("CI")
    _run(pytester, 1)
    monkeypatch.setenv("CI", "true")
    result = _run(pytester, 2, "--parity-update-golden")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["CI=true: nothing written. If the new outputs are right*"])
    assert _stored(pytester) == [1.0, 2.0, 3.0]
    assert not (pytester.path / "reference_outputs" / "net.obtained.npz").exists()


def test_concurrent_writers_of_one_golden_file_keep_every_output(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_many="""
        import numpy as np
        import pytest

        @pytest.mark.parametrize("key", [f"k{i}" for i in range(12)])
        def test_key(parity_golden, key):
            parity_golden.check({key: np.full(3, float(key[1:]))}, name="shared")
    """)
    pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly").assert_outcomes(failed=12)
    with np.load(pytester.path / "reference_outputs" / "shared.npz") as npz:
        assert sorted(npz.files) == sorted(f"k{i}" for i in range(12))
    manifest = json.loads((pytester.path / "reference_outputs" / "shared.json").read_text())
    assert sorted(manifest["outputs"]) == sorted(f"k{i}" for i in range(12))
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=12)


PROVENANCE_TEST = """
import numpy as np

def test_logits(parity_golden):
    manifest = {"checkpoint": {"digest": "DIGEST"}}
    parity_golden.check({"logits": np.ones(3)}, name="net", manifest=manifest)
"""


def test_goldens_of_another_checkpoint_fail_as_such_and_update_rewrites_them(pytester):
    pytester.makepyfile(test_provenance=PROVENANCE_TEST.replace("DIGEST", "a" * 64))
    pytester.runpytest()  # writes the goldens, computed from checkpoint aaaa...
    pytester.runpytest().assert_outcomes(passed=1)
    pytester.makepyfile(test_provenance=PROVENANCE_TEST.replace("DIGEST", "b" * 64))
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the goldens belong to another checkpoint or other inputs (not"
                                 " a parity failure): checkpoint digest bbbbbbbbbbbb… but the "
                                 "goldens were computed from aaaaaaaaaaaa…*"])
    result = pytester.runpytest("--parity-update-golden")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Rewritten (--parity-update-golden): review the diff*"])
    pytester.runpytest().assert_outcomes(passed=1)


def _clean_failure(result, *lines):
    """One failed test whose message is these lines: no traceback, no exception type."""
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(list(lines))
    result.stdout.no_fnmatch_line("*Error:*")
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*During handling of the above exception*")


def test_a_lock_file_left_by_a_killed_run_is_reused(pytester):
    (pytester.path / "reference_outputs").mkdir()
    stale = pytester.path / "reference_outputs" / ".net.lock"
    stale.write_text("pid 12345\n")
    stale.chmod(0o444)
    _run(pytester, 1).assert_outcomes(failed=1)  # written, for review
    _run(pytester, 1).assert_outcomes(passed=1)


def test_a_directory_in_the_lock_files_place_is_a_clean_error(pytester):
    (pytester.path / "reference_outputs" / ".net.lock").mkdir(parents=True)
    _clean_failure(_run(pytester, 1), "*reference_outputs/.net.lock: a directory in the place of "
                                      "the golden file's lock file; remove it")
    assert sorted(p.name for p in (pytester.path / "reference_outputs").iterdir()) == [".net.lock"]


def test_a_golden_directory_that_is_a_file_is_a_clean_error(pytester):
    (pytester.path / "reference_outputs").write_text("not a directory")
    _clean_failure(_run(pytester, 1),
                   "*reference_outputs: *reference_outputs is a file, not a directory")
    assert (pytester.path / "reference_outputs").read_text() == "not a directory"


def test_obtained_outputs_that_cannot_be_saved_still_report_the_mismatch(pytester):
    _run(pytester, 1)
    (pytester.path / "reference_outputs" / "net.obtained.npz").mkdir()
    _clean_failure(_run(pytester, 2),
                   "*[[]parity[]] net vs golden/logits: values are not sufficiently close",
                   "Nothing written: /*/reference_outputs/net.obtained.npz: cannot "
                   "write it: a directory is in its place")  # one [parity], the message's
    assert _stored(pytester) == [1.0, 2.0, 3.0]
    assert sorted(p.name for p in (pytester.path / "reference_outputs").iterdir()) == [
        ".net.lock", "net.json", "net.npz", "net.obtained.npz"]


@pytest.mark.parametrize("ci", [False, True], ids=["workstation", "CI"])
def test_a_damaged_golden_file_is_a_clean_error(pytester, monkeypatch, ci):
    _run(pytester, 1)
    arrays = pytester.path / "reference_outputs" / "net.npz"
    arrays.write_bytes(arrays.read_bytes()[:100])
    if ci:
        monkeypatch.setenv("CI", "true")
    _clean_failure(_run(pytester, 1, "--parity-update-golden"),
                   "*reference_outputs/net.npz: unreadable golden outputs (BadZipFile: *")
    assert len(arrays.read_bytes()) == 100  # not rewritten: a damaged file is for a person


def test_the_old_fixture_name_golden_still_works_and_warns(pytester):
    pytester.makepyfile(test_old_name="""
        import numpy as np

        def test_logits(golden):
            golden.check({"logits": np.ones(3)}, name="net")
    """)
    pytester.runpytest().assert_outcomes(failed=1)  # written for review, as parity_golden does
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*ParityDeprecationWarning: [[]parity[]] the fixture 'golden' is "
                                 "deprecated and will be removed in the next release; use "
                                 "'parity_golden'"])
    strict = pytester.runpytest("-W", "error::DeprecationWarning")
    strict.assert_outcomes(errors=1)
