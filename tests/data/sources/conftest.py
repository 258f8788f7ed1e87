"""Fixtures of the source tests: yfinance without disk caches or shared singletons, and a fake Yahoo."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yfinance
import yfinance.base
import yfinance.cache
import yfinance.data

from fake_yahoo import FakeYahoo


@pytest.fixture(autouse=True)
def hermetic_yfinance(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No disk caches, a fresh YfData singleton and response cache, deterministic tz-probe fallback."""
    monkeypatch.setattr(yfinance.cache._TzCacheManager, "_tz_cache", yfinance.cache._TzCacheDummy())
    monkeypatch.setattr(yfinance.cache._CookieCacheManager, "_Cookie_cache", yfinance.cache._CookieCacheDummy())
    monkeypatch.setattr(yfinance.base, "_tz_info_fetch_ctr", 0)
    yfinance.data.SingletonMeta._instances.pop(yfinance.data.YfData, None)
    yfinance.data.YfData.cache_get.cache_clear()
    yield
    yfinance.data.SingletonMeta._instances.pop(yfinance.data.YfData, None)
    yfinance.data.YfData.cache_get.cache_clear()


@pytest.fixture
def yahoo() -> FakeYahoo:
    return FakeYahoo()
