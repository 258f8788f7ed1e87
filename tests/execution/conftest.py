"""The executor tests' Redis client: a clean database of the module's redis-server (tests/conftest.py)."""

from __future__ import annotations

import pytest
import redis


@pytest.fixture
def client(redis_url):
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.flushdb()
    yield r
    r.close()
