"""Fixtures of the local-stack tests: a StackConfig under a temporary folder on free ports."""

from __future__ import annotations

import pytest

from ports import make_stack_config as _make_stack_config


@pytest.fixture(scope="session")
def make_stack_config():
    """``make_stack_config(base)``: a StackConfig with run dir ``base/run``, home ``base`` and free ports."""
    return _make_stack_config
