"""Test configuration shared by the inventory tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Hypothesis, while printing a failing example, touches ``mypy_extensions.TypedDict``, which
    # warns; with ``filterwarnings = error`` that warning would hide the failure itself behind an
    # INTERNALERROR.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning",
    )
