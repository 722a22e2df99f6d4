"""pytester's in-process runs forget modules first imported during a run; torch cannot import
some of its modules twice in one process (their op libraries register once), and parity cases
import the installed frameworks (and torch some lazy submodules) to pin their numerics. So
that happens here, once, up front. Likewise one trace picture: matplotlib imports its parts
as it first draws, and a second copy of a part fails the next figure (`Invalid arguments to
set_clip_path`)."""

import tempfile
from importlib.util import find_spec
from pathlib import Path

from pytest_parity import numerics

with numerics.applied("pinned", seed=0):
    pass

if find_spec("matplotlib") is not None:
    from pytest_parity.diagnose.picture import draw_trace

    with tempfile.TemporaryDirectory() as directory:
        module = {"torch": "", "output_margin": 2.0, "alone_margin": 2.0}
        draw_trace({"name": "warm-up", "diagnosis": {"modules": [module], "culprit": module}},
                   Path(directory) / "warm-up.png")
