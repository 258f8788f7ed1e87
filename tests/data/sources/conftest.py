"""The source tests run yfinance hermetically (fixtures in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _hermetic(hermetic_yfinance):
    yield
