"""For tests whose inner parity cases only run with the frameworks installed: without them the
`parity_device` fixture skips each case (rightly), so these tests cannot pass; they skip too."""

from importlib.util import find_spec

import pytest

MISSING = [name for name in ("torch", "jax", "flax") if find_spec(name) is None]

needs_frameworks = pytest.mark.skipif(
    bool(MISSING), reason=f"needs torch, jax and flax installed ({', '.join(MISSING)} missing)")
