"""Shared fixtures: a local Spark session, small deterministic bar sets, a real redis-server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from bar_fixtures import make_bars
from hft.config import SPARK_LOCAL_CONF, SPARK_LOCAL_ENV
from ports import free_port

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@pytest.fixture(autouse=True)
def _no_feature_settings(monkeypatch):
    """The default feature spec in every test (FeatureSpec.from_env): a shell's HFT_SECTORS or HFT_MARKET_TICKER
    must not change what the tests compute. A test sets them itself when it is about them."""
    monkeypatch.delenv("HFT_SECTORS", raising=False)
    monkeypatch.delenv("HFT_MARKET_TICKER", raising=False)


@pytest.fixture
def bars_factory():
    return make_bars


@pytest.fixture(scope="session")
def spark():
    """One local[1] Spark session for the whole run (UTC, tiny shuffles, no UI)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.update(SPARK_LOCAL_ENV)
    from pyspark.sql import SparkSession

    from hft.stack import hft_spark_jar

    builder = SparkSession.builder
    for key, value in SPARK_LOCAL_CONF.items():
        builder = builder.config(key, value)
    session = (
        builder.master("local[1]")
        .appName("hft-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "1g")
        .config("spark.jars", hft_spark_jar())  # the project's classes (streaming/jvm)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A redis-server on a free loopback port, for one test module."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed: run `make setup`"
    import redis

    port = free_port()
    work = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(work),
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def hermetic_yfinance(monkeypatch: pytest.MonkeyPatch):
    """yfinance without disk caches, with a fresh YfData singleton and response cache, and a deterministic
    tz-probe fallback."""
    import yfinance.base
    import yfinance.cache
    import yfinance.data

    monkeypatch.setattr(yfinance.cache._TzCacheManager, "_tz_cache", yfinance.cache._TzCacheDummy())
    monkeypatch.setattr(yfinance.cache._CookieCacheManager, "_Cookie_cache", yfinance.cache._CookieCacheDummy())
    monkeypatch.setattr(yfinance.base, "_tz_info_fetch_ctr", 0)
    yfinance.data.SingletonMeta._instances.pop(yfinance.data.YfData, None)
    yfinance.data.YfData.cache_get.cache_clear()
    yield
    yfinance.data.SingletonMeta._instances.pop(yfinance.data.YfData, None)
    yfinance.data.YfData.cache_get.cache_clear()


@pytest.fixture
def yahoo(hermetic_yfinance):
    """A fake Yahoo (tests/fake_yahoo.py) to mount on a requests.Session handed to yfinance."""
    from fake_yahoo import FakeYahoo

    return FakeYahoo()
