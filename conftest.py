"""Repository-wide test configuration for this repo's own runs (not part of the plugin)."""

import os

from hypothesis import HealthCheck, settings

# CI reruns must be reproducible and must not fail on a slow shared machine's timing.
settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

import models.registry  # noqa: E402, F401  (registers the zoo's pairs for this repo's runs)
