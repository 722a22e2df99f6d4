"""pytester's in-process runs forget modules first imported during a run; torch cannot import
some of its modules twice in one process (their op libraries register once), and parity cases
import the installed frameworks (and torch some lazy submodules) to pin their numerics. So
that happens here, once, up front."""

from pytest_parity import numerics

with numerics.applied("pinned", seed=0):
    pass
