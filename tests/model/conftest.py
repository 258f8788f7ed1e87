"""Session-scoped feature tables for the model tests."""

from __future__ import annotations

import pytest
from model_fixtures import feature_table


@pytest.fixture(scope="session")
def predictable_table():
    return feature_table(0.15)


@pytest.fixture(scope="session")
def random_table():
    return feature_table(0.0)
