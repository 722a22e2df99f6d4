import importlib
import importlib.util
import sys

import pytest

pytest_plugins = ["pytester"]

# The main job's pairs (`nox -s parity`, which passes --zoo=flagship): one of each kind the
# zoo ports, at the sizes users port most. Every other zoo model, and the tests marked
# zoo_all, run under --zoo=all: the default, so the whole suite (and CI) runs them all.
FLAGSHIP = {"resnet50", "vit_b_16", "minilm_l6", "llama", "gpt2"}
# The zoo's largest models (and their NNX twins): their cases are slow (see the slow marker).
LARGEST = {"resnet101", "resnet152", "vit_l_16"}
ZOO_CHOICES = ("flagship", "all")


def pytest_addoption(parser):
    parser.addoption(
        "--fuzz-examples", type=int, default=40, metavar="N",
        help="examples each fuzz test draws (tests/unit/test_fuzz_*.py). Default 40 keeps "
             "the suite fast; e.g. --fuzz-examples=2000 for a campaign.")
    parser.addoption(
        "--zoo", choices=ZOO_CHOICES, default="all",
        help="what the parity cases cover: 'flagship' (ResNet-50, ViT-B/16, MiniLM-L6, the "
             "decoders, the Linen layer catalogue, the mutations: the main job, nox -s "
             "parity) or "
             "'all' (every zoo model, NNX twins, gradients and training steps; default).")
    parser.addoption(
        "--robustness-seeds", type=int, default=0, metavar="N",
        help="input seeds the robustness tests draw (tests/zoo/test_training_robustness.py): "
             "the zoo's gradient and step checks over N batches. Default 0: not run (about "
             "40 s a seed); e.g. --robustness-seeds=50.")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "zoo_all: runs only with --zoo=all (the default), not in the main job")
    config.addinivalue_line(
        "markers", "robustness: runs only with --robustness-seeds=N (N > 0), over N seeds")
    config.addinivalue_line(
        "markers", "slow: a case of 10 s or more here (the bug catalogues, training runs, the "
                   "zoo's largest models): `nox -s tests` leaves them to `nox -s tests -- -m "
                   "slow`; CI runs both")


def pytest_generate_tests(metafunc):
    if "robustness_seed" in metafunc.fixturenames:
        seeds = metafunc.config.getoption("robustness_seeds")
        metafunc.parametrize("robustness_seed", range(seeds) if seeds > 0 else [None])


def _zoo_model(item):
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get("name") if callspec else None
    return name if isinstance(name, str) else None


def pytest_collection_modifyitems(config, items):
    """Under --zoo=flagship, deselect the zoo's other models and the zoo_all tests; without
    --robustness-seeds, the robustness tests."""
    flagship = config.getoption("zoo") != "all"
    campaign = config.getoption("robustness_seeds") > 0
    kept, deselected = [], []
    for item in items:
        model = _zoo_model(item)
        if model is not None and model.removesuffix("_nnx") in LARGEST:
            item.add_marker(pytest.mark.slow)
        outside = flagship and (item.get_closest_marker("zoo_all") is not None or (
            "zoo" in item.path.parts and model is not None and model not in FLAGSHIP))
        if item.get_closest_marker("robustness") is not None and not campaign:
            outside = True
        (deselected if outside else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(autouse=True)
def _frameworks_outlive_pytester(request):
    """Import the frameworks before a pytester test snapshots sys.modules.

    pytester runs pytest in this process and afterwards drops every module the run imported
    first. torch's operator registry and flax's classes outlive that drop, so the next import
    fails: torchvision with "operator torchvision::nms does not exist", an NNX module with
    "Found data on value of type Param assigned to static attribute" (seen when
    tests/plugin/test_training_report.py ran before tests/plugin/test_readme_example.py).
    Autouse fixtures are set up before the others of their scope, so before the snapshot.
    """
    if "pytester" not in request.fixturenames:
        return
    for name in ("torch", "jax", "flax.linen", "flax.nnx"):
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    if importlib.util.find_spec("torchvision") is not None and "torch" in sys.modules:
        from pytest_parity.torchvision_compat import import_torchvision

        import_torchvision()
