"""Ports this project did not write (transformers' Flax models, flaxmodels), checked through
the public API only: what a user writes, counted in each test."""

import importlib.util

import pytest


@pytest.fixture(scope="session", autouse=True)
def _torchvision_importable():
    """transformers imports torchvision eagerly where it is installed; on CPU torch its CUDA
    wheel needs pytest_parity.torchvision_compat first (issue 29 takes this off the user).
    Without torchvision there is nothing to do."""
    pytest.importorskip("torch")
    if importlib.util.find_spec("torchvision") is None:
        return
    from pytest_parity.torchvision_compat import import_torchvision

    import_torchvision()
