pytest_plugins = ["pytester"]


def pytest_addoption(parser):
    parser.addoption(
        "--fuzz-examples", type=int, default=40, metavar="N",
        help="examples each fuzz test draws (tests/unit/test_fuzz_*.py). Default 40 keeps "
             "the suite fast; e.g. --fuzz-examples=2000 for a campaign.")
