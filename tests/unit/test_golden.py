import json

import numpy as np
import pytest

from pytest_parity import golden
from pytest_parity.cli import main
from tests.support.tinynet import TINYNET

OUTPUTS = {"photo": np.arange(4, dtype=np.float32).reshape(1, 4)}
MANIFEST = {"source": "test", "checkpoint": {"digest": "a" * 64},
            "outputs": {"photo": {"input_digest": "b" * 64}}}


@pytest.fixture(autouse=True)
def _not_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)


def test_written_goldens_read_back_with_their_manifest(tmp_path):
    golden.write(tmp_path, "net", OUTPUTS, MANIFEST)
    read = golden.read(tmp_path, "net")
    assert np.array_equal(read.outputs["photo"], OUTPUTS["photo"])
    assert read.manifest["model"] == "net"
    assert read.manifest["outputs"]["photo"]["shape"] == [1, 4]
    assert read.manifest["outputs"]["photo"]["input_digest"] == "b" * 64


def test_nothing_is_written_under_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(golden.GoldenError, match="refusing to write golden outputs under CI"):
        golden.write(tmp_path, "net", OUTPUTS, MANIFEST, update=True)
    assert list(tmp_path.iterdir()) == []


def test_existing_goldens_are_rewritten_only_with_update(tmp_path):
    golden.write(tmp_path, "net", OUTPUTS, MANIFEST)
    changed = {"photo": OUTPUTS["photo"] + 1}
    with pytest.raises(golden.GoldenError, match="golden outputs exist; pass --update"):
        golden.write(tmp_path, "net", changed, MANIFEST)
    assert np.array_equal(golden.read(tmp_path, "net").outputs["photo"], OUTPUTS["photo"])
    golden.write(tmp_path, "net", changed, MANIFEST, update=True)
    assert np.array_equal(golden.read(tmp_path, "net").outputs["photo"], changed["photo"])


def test_missing_and_tampered_goldens_are_named(tmp_path):
    with pytest.raises(golden.GoldenError, match=r"no golden outputs for 'net'; write them "
                                                 r"with `parity golden net`"):
        golden.read(tmp_path, "net")
    arrays, _ = golden.write(tmp_path, "net", OUTPUTS, MANIFEST)
    np.savez(arrays, photo=OUTPUTS["photo"] * 2)
    with pytest.raises(golden.GoldenError, match="photo: not the array its manifest describes"):
        golden.read(tmp_path, "net")


def test_provenance_mismatch_names_checkpoint_and_input(tmp_path):
    golden.write(tmp_path, "net", OUTPUTS, MANIFEST)
    read = golden.read(tmp_path, "net")
    assert golden.provenance_problems(read, "a" * 64, {"photo": "b" * 64}) == []
    assert golden.provenance_problems(read, "c" * 64, {"photo": "d" * 64}) == [
        "checkpoint digest cccccccccccc… but the goldens were computed from aaaaaaaaaaaa…",
        "input 'photo' digest dddddddddddd… but the goldens were computed from bbbbbbbbbbbb…"]


def test_cli_writes_goldens_of_a_registered_pair_and_refuses_to_clobber(tmp_path, capsys):
    pytest.importorskip("torch")
    assert TINYNET.golden is not None
    assert main(["golden", "tinynet", "--dir", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "tinynet.json").read_text())
    assert manifest["format"] == golden.GOLDEN_FORMAT
    assert manifest["source"] == "tests.support.tinynet"
    assert main(["golden", "tinynet", "--dir", str(tmp_path)]) == 2
    assert "golden outputs exist" in capsys.readouterr().err
