import subprocess
import sys

import pytest

from pytest_parity import torchvision_compat

pytest.importorskip("torch")


def _fresh_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


def test_torchvision_imports_and_its_models_run():
    result = _fresh_python(
        "import torch\n"
        "from pytest_parity.torchvision_compat import import_torchvision, workaround_applied\n"
        "tv = import_torchvision()\n"
        "logits = tv.models.resnet18(num_classes=7).eval()(torch.zeros(1, 3, 32, 32))\n"
        "print(tuple(logits.shape), workaround_applied())\n")
    assert result.returncode == 0, result.stderr
    shape, applied = result.stdout.split(")")
    assert shape == "(1, 7"
    # The workaround is applied exactly when the plain import fails.
    plain = _fresh_python("import torchvision")
    assert applied.strip() == str(plain.returncode != 0)
    if plain.returncode != 0:
        assert "operator torchvision::nms does not exist" in plain.stderr


class _FailingImport:
    def __init__(self, message):
        self.message = message

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            raise RuntimeError(self.message)


def test_other_import_errors_are_not_hidden(monkeypatch):
    monkeypatch.setattr(torchvision_compat, "_schema_library", None)
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_FailingImport("some other failure"), *sys.meta_path])
    with pytest.raises(RuntimeError, match="some other failure"):
        torchvision_compat.import_torchvision()
    assert not torchvision_compat.workaround_applied()  # no schemas were defined for it


def test_without_torchvision_installed_there_is_nothing_to_import(monkeypatch):
    from pytest_parity import torchvision_compat

    monkeypatch.setattr(torchvision_compat, "find_spec", lambda name: None)
    assert torchvision_compat.import_torchvision() is None  # no ModuleNotFoundError
