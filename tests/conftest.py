"""Shared fixtures: a local Spark session and small, deterministic bar sets."""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest

from hft.config import SPARK_LOCAL_CONF, SPARK_LOCAL_ENV
from hft.data.calendar import session_bounds, trading_days

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


def make_bars(
    tickers=("AAA", "BBB"),
    start="2024-03-07",
    end="2024-03-12",
    interval="1m",
    seed=0,
) -> pd.DataFrame:
    """A plain random walk of consistent OHLCV bars over every regular session in [start, end]."""
    rng = np.random.default_rng(seed)
    step = pd.Timedelta(interval.replace("m", "min"))
    frames = []
    for i, ticker in enumerate(tickers):
        price = 50.0 + 40 * i
        for day in trading_days(pd.Timestamp(start).date(), pd.Timestamp(end).date()):
            open_, close_ = session_bounds(day)
            ts = pd.date_range(open_, close_ - step, freq=step)
            r = rng.normal(0, 0.001, len(ts))
            c = price * np.exp(np.cumsum(r))
            o = np.r_[price * np.exp(rng.normal(0, 0.003)), c[:-1]]
            h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, 0.0005, len(ts))))
            lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, 0.0005, len(ts))))
            v = rng.integers(0, 10_000, len(ts))
            v[rng.random(len(ts)) < 0.05] = 0  # flat, zero-volume bars happen
            frames.append(
                pd.DataFrame(
                    {"ticker": ticker, "ts": ts, "interval": interval, "open": o.round(2), "high": h.round(2) + 0.01,
                     "low": lo.round(2) - 0.01, "close": c.round(2), "volume": v}
                )
            )
            price = c[-1]
    bars = pd.concat(frames, ignore_index=True)
    bars["high"] = bars[["open", "high", "close"]].max(axis=1)
    bars["low"] = bars[["open", "low", "close"]].min(axis=1)
    return bars


@pytest.fixture
def bars_factory():
    return make_bars


@pytest.fixture(scope="session")
def spark():
    """One local[1] Spark session for the whole run (UTC, tiny shuffles, no UI)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.update(SPARK_LOCAL_ENV)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in SPARK_LOCAL_CONF.items():
        builder = builder.config(key, value)
    session = (
        builder.master("local[1]")
        .appName("hft-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
