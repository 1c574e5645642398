"""Test configuration shared by all the tests."""

from __future__ import annotations

import os

import pytest

# The servers the tests start are behind no load balancer: on SIGTERM they stop without the
# drain period (--drain-s, default 3 s), which would add that much to every stop. The drain
# itself is tested with its flag given (tests/server/test_drain.py).
os.environ.setdefault("PYORDER_DRAIN_S", "0")


def pytest_configure(config: pytest.Config) -> None:
    # Hypothesis, while printing a failing example, touches ``mypy_extensions.TypedDict``, which
    # warns; with ``filterwarnings = error`` that warning would hide the failure itself behind an
    # INTERNALERROR.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning",
    )
