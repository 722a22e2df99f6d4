"""Golden outputs: an original implementation's outputs, kept with their provenance.

    files.py    NAME.npz + NAME.json in the golden directory: write, read, provenance
    stored.py   GoldenError; an .npz and a manifest read without trusting their bytes
    lock.py     the lock on one golden file across processes, with a clean error
    fixture.py  the `parity_golden` fixture: pytest-regressions' review semantics, locked writes
"""

from pytest_parity.golden.files import (
    GOLDEN_FORMAT,
    Golden,
    GoldenError,
    array_digest,
    paths,
    provenance_problems,
    read,
    write,
)
from pytest_parity.golden.fixture import GoldenFixture

__all__ = [
    "GOLDEN_FORMAT",
    "Golden",
    "GoldenError",
    "GoldenFixture",
    "array_digest",
    "paths",
    "provenance_problems",
    "read",
    "write",
]
