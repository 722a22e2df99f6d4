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
