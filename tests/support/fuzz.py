"""What the fuzz tests share: how many examples, and what an outcome may be.

A reader given damaged input may return a correct result or raise the plugin's own error
naming the file; anything else (another exception, a hang, a damaged result) fails the test.
"""

from __future__ import annotations

import faulthandler
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from pytest_parity.errors import PREFIX, ParityError

# A read of a few-KiB file takes milliseconds; far past this, the process is stuck. The
# watchdog ends the whole run with every thread's stack, so CI fails instead of hanging.
HANG_SECONDS = 60


def fuzz_settings(request: pytest.FixtureRequest) -> settings:
    """Hypothesis settings of a fuzz test: --fuzz-examples examples, no deadline."""
    return settings(max_examples=request.config.getoption("fuzz_examples"), deadline=None,
                    derandomize=False, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@contextmanager
def no_hang(seconds: float = HANG_SECONDS):
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def outcome(call: Callable[[], Any], names: Iterable[str]) -> tuple[str, Any]:
    """('ok', result) or ('error', message); an exception other than ParityError, or a
    message that lacks the prefix or one of `names` (the file, ...), fails the test."""
    with no_hang():
        try:
            return "ok", call()
        except ParityError as error:
            message = str(error)
        except Exception as error:  # the finding: name the input in the failure
            pytest.fail(f"a traceback instead of a {PREFIX} error: "
                        f"{type(error).__name__}: {error}", pytrace=True)
    assert message.startswith(PREFIX), message
    for name in names:
        assert str(name) in message, f"{name!r} not named in: {message}"
    return "error", message
