"""Shared fixtures: a local Spark session and small, deterministic bar sets."""

from __future__ import annotations

import os
import sys

import pytest

from hft.config import SPARK_LOCAL_CONF, SPARK_LOCAL_ENV
from bar_fixtures import make_bars

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


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
