"""Spark implementation of :mod:`hft.features.definitions`: ``DataFrame -> DataFrame``.

Only built-in Spark SQL functions (no Python UDFs), so executors need nothing but the JVM. Every window is
``partitionBy(ticker, interval, date).orderBy(ts_us)``: one shuffle and one sort for the whole table.

Windowed sums are differences of per-session running sums, ``sum(x over w bars) = S_t - S_{t-w}``, not
sliding frames: Spark recomputes a sliding ``ROWS BETWEEN`` aggregate from scratch on every row (cost grows
with the window), while a running sum and a lag are O(1) per row (the whole job ran 2.4x faster on 1M bars).
Means and sample variances come from the same sums. Sessions are short (390 one-minute bars), so the
cancellation in the difference stays far inside the 1e-9 agreement with the reference (tested), and a
window of exact zeros (a flat price) still gives exactly zero.

The wide window and projection code Spark generates for this plan is larger than HotSpot's 8000-byte
"huge method" limit, above which the JIT leaves a method interpreted (about 3x slower here);
:data:`hft.config.SPARK_LOCAL_CONF` lifts that limit for every Spark JVM the project starts.
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from hft.data.calendar import EXCHANGE_TZ
from hft.features.definitions import (
    GK_CO_WEIGHT,
    LN2,
    SESSION_MINUTES,
    FeatureSpec,
    yang_zhang_k,
)


def _session_window():
    return Window.partitionBy("ticker", "interval", "date").orderBy("ts_us")


#: Per-bar inputs that are null on a session's first bar (they need the previous close).
_NEEDS_PREVIOUS = {"r1_sq", "gap"}


def _full(col: str, w: int, value: Column) -> Column:
    """``value`` where all ``w`` inputs ``col`` of the window exist, else null.

    Inputs are never null except on a session's first bar for those in ``_NEEDS_PREVIOUS`` (prices are
    validated positive), so "all w present" is a test on the bar's position in its session (``pos``,
    computed once) instead of one more count aggregate per feature."""
    first = w if col in _NEEDS_PREVIOUS else w - 1
    return F.when(F.col("pos") >= first, value)


def _sqrt_pos(value: Column) -> Column:
    return F.sqrt(F.greatest(value, F.lit(0.0)))


def add_session_columns(bars: DataFrame) -> DataFrame:
    """Add ``date`` (New York session date) and ``ts_us`` (epoch microseconds, the window order)."""
    local = F.from_utc_timestamp("ts", EXCHANGE_TZ)
    return bars.withColumn("date", F.to_date(local)).withColumn("ts_us", F.unix_micros("ts"))


def compute_features(bars: DataFrame, spec: FeatureSpec = FeatureSpec()) -> DataFrame:
    """Feature table of canonical ``bars`` (columns of :data:`hft.schemas.BAR_SPARK_DDL`).

    Same rows and values as :func:`hft.features.reference.compute_features`: only bars with a label.
    """
    sw = _session_window()
    df = add_session_columns(bars)
    prev_c = F.lag("close", 1).over(sw)
    df = (
        df.withColumn("pos", F.row_number().over(sw) - 1)
        .withColumn("prev_close", prev_c)
        .withColumn("r1", F.log(F.col("close") / F.col("prev_close")))
        .withColumn("gap", F.log(F.col("open") / F.col("prev_close")))
        .withColumn("hl", F.log(F.col("high") / F.col("low")))
        .withColumn("co", F.log(F.col("close") / F.col("open")))
        .withColumn(
            "rs",
            F.log(F.col("high") / F.col("close")) * F.log(F.col("high") / F.col("open"))
            + F.log(F.col("low") / F.col("close")) * F.log(F.col("low") / F.col("open")),
        )
        .withColumn("gk", 0.5 * F.col("hl") * F.col("hl") - GK_CO_WEIGHT * F.col("co") * F.col("co"))
        .withColumn(
            "tr",
            F.when(F.col("prev_close").isNull(), F.col("high") - F.col("low")).otherwise(
                F.greatest("high", "prev_close") - F.least("low", "prev_close")
            ),
        )
        .withColumn("v", F.col("volume").cast("double"))
    )
    squares = {f"{c}_sq": F.col(c) * F.col(c) for c in ("r1", "hl", "gap", "co", "v")}
    summed = [*squares, "gk", "rs", "gap", "co", "tr", "v"]
    running = sw.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    df = df.withColumns(squares).select("*", *(F.sum(c).over(running).alias(f"sum_{c}") for c in summed))

    def wsum(col: str, w: int) -> Column:
        """Sum of ``col`` over the session's last ``w`` bars (its first bars at a session's start)."""
        return F.col(f"sum_{col}") - F.coalesce(F.lag(f"sum_{col}", w).over(sw), F.lit(0.0))

    def wmean(col: str, w: int) -> Column:
        return wsum(col, w) / w

    def wvar(col: str, w: int) -> Column:
        """Sample variance (ddof 1) over the last ``w`` bars."""
        total = wsum(col, w)
        return (wsum(f"{col}_sq", w) - total * total / w) / (w - 1)

    features: dict[str, Column] = {}
    for k in spec.return_lags:
        features[f"ret_{k}"] = F.log(F.col("close") / F.lag("close", k).over(sw))
    for w in spec.vol_windows:
        features[f"rv_{w}"] = _full("r1_sq", w, _sqrt_pos(wsum("r1_sq", w)))
    for w in spec.vol_windows:
        features[f"parkinson_{w}"] = _full("hl_sq", w, _sqrt_pos(wsum("hl_sq", w) / (4.0 * LN2 * w)))
    for w in spec.vol_windows:
        features[f"garman_klass_{w}"] = _full("gk", w, _sqrt_pos(wmean("gk", w)))
    for w in spec.vol_windows:
        features[f"rogers_satchell_{w}"] = _full("rs", w, _sqrt_pos(wmean("rs", w)))
    for w in spec.vol_windows:
        k_yz = yang_zhang_k(w)
        yz = wvar("gap", w) + k_yz * wvar("co", w) + (1.0 - k_yz) * wmean("rs", w)
        features[f"yang_zhang_{w}"] = _full("gap", w, _sqrt_pos(yz))
    for w in spec.vol_windows:
        features[f"atr_{w}"] = _full("tr", w, wmean("tr", w) / F.col("close"))
    features["hl_range"] = F.col("hl")
    wv = spec.volume_window
    v_var = wvar("v", wv)
    features["volume_z"] = _full(
        "v", wv, F.when(v_var > 0, (F.col("v") - wmean("v", wv)) / F.sqrt(v_var)).otherwise(F.lit(0.0))
    )
    local = F.from_utc_timestamp("ts", EXCHANGE_TZ)
    minutes = (F.hour(local) * 60 + F.minute(local) + F.second(local) / 60.0 - 570).cast("double")
    angle = minutes * (2.0 * math.pi / SESSION_MINUTES)
    features["tod_sin"] = F.sin(angle)
    features["tod_cos"] = F.cos(angle)

    horizon_us = spec.horizon_minutes * 60 * 1_000_000
    fwd_close = F.first("close").over(sw.rangeBetween(horizon_us, horizon_us))
    df = df.select("*", *(col.alias(name) for name, col in features.items()), fwd_close.alias("fwd_close"))
    df = df.where(F.col("fwd_close").isNotNull())
    df = df.withColumn("fwd_ret", F.log(F.col("fwd_close") / F.col("close"))).withColumn(
        "label", (F.col("fwd_close") > F.col("close")).cast("int")
    )
    return df.select(*spec.output_columns())


class NoBarsError(ValueError):
    """The lake holds no bars for what the job was asked to process."""


def read_bars(
    spark,
    bars_root: str,
    interval: str,
    start=None,
    end=None,
    tickers=None,
) -> DataFrame:
    """Canonical bars from the lake's ``bars/`` tree (hive partitions), filtered by session date
    ``[start, end]`` and tickers with partition pruning."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import AnalysisException

    path = f"{bars_root.rstrip('/')}/interval={interval}"
    try:
        df = spark.read.option("basePath", bars_root).parquet(path)
    except (AnalysisException, Py4JJavaError) as exc:
        raise NoBarsError(f"no {interval} bars under {bars_root} ({str(exc).splitlines()[0]})") from None
    if start is not None:
        df = df.where(F.col("date") >= F.lit(start))
    if end is not None:
        df = df.where(F.col("date") <= F.lit(end))
    if tickers:
        df = df.where(F.col("ticker").isin([t.upper() for t in tickers]))
    return df.select(
        F.col("ticker").cast("string"),
        F.col("ts"),
        F.col("interval").cast("string"),
        "open", "high", "low", "close",
        F.col("volume").cast("long"),
    )


def write_features(features: DataFrame, output: str) -> None:
    """Write the feature table partitioned by interval, ticker and date, replacing only the partitions
    present in ``features`` (re-running a day rewrites that day and nothing else)."""
    (
        features.repartition("interval", "ticker", "date")
        .write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy("interval", "ticker", "date")
        .parquet(output)
    )
