"""Benchmark of the feature job: Spark on ``local[2]`` against single-process baselines.

Run from the repository root (``make bench-features`` runs the defaults)::

    .venv/bin/python bench/features.py [--sizes 1e6,5e6,2e7] [--repeat 2] [--tickers 200]
                                        [--engines reference,polars,spark] [--json PATH]

Data: for every size, ``--tickers`` synthetic tickers (:class:`hft.data.sources.synthetic.SyntheticSource`,
1m bars) over as many consecutive NYSE sessions as it takes to reach the size. The bars are generated once
and cached as Parquet under ``var/bench/`` (a second run reuses them).

Engines, all producing the same feature table (:class:`hft.features.FeatureSpec` defaults):

* ``reference``: :func:`hft.features.reference.compute_features` on a pandas frame already in memory.
  Timed: the call, which returns the materialized feature frame. One call needs about 1.4 KB per bar (20M
  bars were killed for memory on 24 GiB), so the frame is fed in batches of whole tickers of at most
  ``REFERENCE_BATCH_BARS`` bars and the outputs concatenated (timed too); the table is the same as one
  call's (checked), and sizes up to that bound are one call.
* ``polars``: :func:`polars_features` below, a benchmark-only transcription of
  :mod:`hft.features.definitions` (lazy plan, ``collect()`` to an in-memory frame), on a polars frame
  already in memory. Before any timing, its output is compared with the reference on
  every row and column (rtol 1e-9, atol 1e-12) and the benchmark aborts if they disagree; Spark's output is
  checked the same way. The check runs on the 1e6 set (``--verify-size``) whatever ``--sizes`` are.
* ``spark``: a ``local[2]`` session (8g driver, 8 shuffle partitions) runs
  ``spark.read.parquet(bars) -> hft.features.spark.compute_features -> write.format("noop")``. Timed: the
  whole job, Parquet scan and decode **included** (that is how the job runs); JVM start excluded.
  ``--engines ...,spark-cached`` adds a variant on bars cached in Spark memory (``cache().count()`` untimed).

Timing: reference and polars run ``--repeat`` times, best reported; Spark (and spark-cached) first run
warm-up runs until the JVM is warm, then ``--repeat`` times, best reported as "warm", with the JIT compile
time of the timed runs; the first warm-up is reported as "cold" (codegen and the JIT). Warm means HotSpot no
longer competes for the cores: at least ``--spark-warmups`` runs (default 3), and more while a run's JIT
compile time exceeds ``--spark-warm-jit`` (default 0.15) of its CPU time, up to ``--spark-max-warmups``
(default 30). HotSpot goes on compiling more of Spark's planner and runtime for many jobs: 1M bars, 22 jobs
in one JVM: wall 12.9, 4.2, 3.1, 3.1, 2.8, 2.8, 3.2, 2.6, 2.5, 2.6, 2.8, 2.5, 2.5, 2.4, 2.7, 2.3, 2.5, 2.4,
2.4, 2.5, 2.2, 2.2 s; JIT compile time 13.9, 4.0, 2.1, 1.8, 1.7, 1.4, 1.4, 1.3, 0.8, 1.2, 1.8, 0.8, 0.9, 0.9,
1.1, 0.7, 0.9, 0.6, 0.8, 0.8, 0.7, 0.6 s, of 3.9-6 s of CPU (different methods each job, not
recompilations). At 20M bars the JIT is a few % of a job after the third. Each
(size, engine) runs in a fresh worker process, largest sizes last, so memory is returned between engines
and an engine that runs out of memory is reported and the benchmark goes on. rows/s counts input bars.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq

from hft.data import calendar
from hft.data.calendar import EXCHANGE_TZ
from hft.features.definitions import (
    CONTEXT_MAX_LAG_BARS,
    GAP_MAX_DAYS,
    GK_CO_WEIGHT,
    LN2,
    SESSION_MINUTES,
    VOLUME_BUCKET_MINUTES,
    VOLUME_NORM_DAYS,
    FeatureSpec,
    yang_zhang_k,
)
from hft.schemas import BAR_ARROW_SCHEMA

log = logging.getLogger("bench.features")

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO / "var" / "bench"
SPEC = FeatureSpec()
FIRST_SESSION = date(2022, 1, 3)
SINGLE_PROCESS = ("reference", "polars")
SPARK_ENGINES = ("spark", "spark-cached")
ALL_ENGINES = (*SINGLE_PROCESS, *SPARK_ENGINES)
TARGET_RATIO = 3.0
REFERENCE_BATCH_BARS = 2_500_000  # one reference call on 20M bars does not fit in 24 GiB
POLARS_ENGINE = "in-memory"  # a little faster here than polars 2's default streaming engine
RTOL, ATOL = 1e-9, 1e-12
TICKERS_PER_FETCH = 25  # bounds generation memory; a ticker's path does not depend on the grouping


# --------------------------------------------------------------------------------------------- data


def sessions_for(size: int, tickers: int) -> list[date]:
    """Consecutive trading days from FIRST_SESSION holding at least ``size`` bars for ``tickers`` tickers."""
    days: list[date] = []
    bars, day = 0, FIRST_SESSION
    while bars * tickers < size:
        if calendar.is_trading_day(day):
            opened, closed = calendar.session_bounds(day)
            bars += int((closed - opened) / pd.Timedelta(minutes=1))
            days.append(day)
        day += timedelta(days=1)
    return days


def bars_path(size: int, tickers: int) -> Path:
    return CACHE_DIR / f"bars_1m_{tickers}x{len(sessions_for(size, tickers))}_{FIRST_SESSION:%Y%m%d}_index.parquet"


def generate_bars(size: int, tickers: int) -> tuple[str, int]:
    """Write the synthetic bars of ``size`` to the cache (once); return (path, number of bars)."""
    from hft.data.sources.synthetic import SyntheticSource
    from hft.schemas import bars_to_arrow

    path = bars_path(size, tickers)
    if not path.exists():
        days = sessions_for(size, tickers)
        names = [SPEC.market_ticker, *(f"T{i:03d}" for i in range(tickers - 1))]  # the index: market context
        start, end = pd.Timestamp(days[0], tz="UTC"), pd.Timestamp(days[-1] + timedelta(days=1), tz="UTC")
        source = SyntheticSource()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with pq.ParquetWriter(tmp, BAR_ARROW_SCHEMA) as writer:
            for i in range(0, len(names), TICKERS_PER_FETCH):
                frame = source.fetch(names[i : i + TICKERS_PER_FETCH], start, end, "1m")
                writer.write_table(bars_to_arrow(frame), row_group_size=1 << 20)
                del frame
        tmp.rename(path)
    return str(path), pq.ParquetFile(path).metadata.num_rows


def load_pandas(path: str) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def load_polars(path: str) -> pl.DataFrame:
    return pl.read_parquet(path)


# --------------------------------------------------------------------------------- reference engine


def ticker_batches(tickers: np.ndarray, max_bars: int) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of consecutive whole tickers, at most ``max_bars`` rows each (a ticker
    with more rows is a batch of its own). ``tickers`` must be sorted, as the cached bars are."""
    change = np.flatnonzero(tickers[1:] != tickers[:-1]) + 1
    starts, stops = np.r_[0, change], np.r_[change, len(tickers)]
    if len(set(tickers[starts])) != len(starts):
        raise ValueError("bars are not grouped by ticker")
    batches: list[tuple[int, int]] = []
    for start, stop in zip(starts.tolist(), stops.tolist()):
        if batches and stop - batches[-1][0] <= max_bars:
            batches[-1] = (batches[-1][0], stop)
        else:
            batches.append((start, stop))
    return batches


def reference_features(frame: pd.DataFrame, batches: list[tuple[int, int]]) -> pd.DataFrame:
    """:func:`hft.features.reference.compute_features` over each batch of whole tickers, concatenated.

    Groups and labels never span two tickers, and each batch also gets the index's bars (the market context of
    its tickers; their rows kept once), so this is the table of one call on ``frame`` (:func:`verify` checks
    it); batches bound the memory, as one call needs about 1.4 KB per bar.
    """
    from hft.features.reference import compute_features

    if len(batches) == 1:
        return compute_features(frame, SPEC)
    index = frame[frame["ticker"] == SPEC.market_ticker]
    parts = []
    for start, stop in batches:
        part = frame.iloc[start:stop]
        mine = set(part["ticker"].unique())
        feats = compute_features(pd.concat([part, index]) if SPEC.market_ticker not in mine else part, SPEC)
        parts.append(feats[feats["ticker"].isin(mine)])
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------------------------ polars engine


def polars_features(bars: pl.DataFrame, spec: FeatureSpec = SPEC) -> pl.DataFrame:
    """The feature table of ``bars`` computed by polars (the plan of :func:`polars_plan`, collected)."""
    return polars_plan(bars, spec).collect(engine=POLARS_ENGINE)


def polars_plan(bars: pl.DataFrame, spec: FeatureSpec = SPEC) -> pl.LazyFrame:
    """The feature table of :mod:`hft.features.definitions`, in polars (benchmark baseline only).

    Same approach as the reference: sort by (ticker, interval, ts), compute every rolling window over the
    whole column (inputs that would need the previous session are zeroed so no window mixes garbage in),
    then null each window whose ``w`` inputs do not all lie inside the (ticker, interval, NY date) group,
    using the row's position in its group.
    """
    for interval in bars.get_column("interval").unique().to_list():
        spec.horizon_bars(interval)
    o, h, lo, c = (pl.col(name) for name in ("open", "high", "low", "close"))
    pos, prev_c = pl.col("pos"), pl.col("prev_close")
    row = pl.int_range(pl.len(), dtype=pl.Int64)
    keys = ("ticker", "interval", "date")
    first = pl.any_horizontal([pl.col(k) != pl.col(k).shift(1) for k in keys]).fill_null(True)

    def inside(min_pos: int, value: pl.Expr) -> pl.Expr:
        return pl.when(pos >= min_pos).then(value)

    def sqrt_pos(value: pl.Expr) -> pl.Expr:
        return value.clip(lower_bound=0.0).sqrt()

    def zero_at_start(value: pl.Expr) -> pl.Expr:  # needs C_p: 0 on a session's first bar
        return pl.when(pos >= 1).then(value).otherwise(0.0)

    local = pl.col("ts").dt.convert_time_zone(EXCHANGE_TZ)
    base = (
        bars.lazy()
        .sort("ticker", "interval", "ts", maintain_order=True)
        .with_columns(date=local.dt.date())
        .with_columns(pos=row - pl.when(first).then(row).fill_null(strategy="forward"))
        .with_columns(prev_close=pl.when(pos >= 1).then(c.shift(1)))
    )
    inputs = base.with_columns(
        r1=zero_at_start((c / prev_c).log()),
        gap=zero_at_start((o / prev_c).log()),
        hl=(h / lo).log(),
        co=(c / o).log(),
        rs=(h / c).log() * (h / o).log() + (lo / c).log() * (lo / o).log(),
        tr=pl.when(pos >= 1).then(pl.max_horizontal(h, prev_c) - pl.min_horizontal(lo, prev_c)).otherwise(h - lo),
        v=pl.col("volume").cast(pl.Float64),
    ).with_columns(gk=0.5 * pl.col("hl") ** 2 - GK_CO_WEIGHT * pl.col("co") ** 2)

    r1, gap, hl, co, rs, gk, tr, v = (pl.col(n) for n in ("r1", "gap", "hl", "co", "rs", "gk", "tr", "v"))
    features: dict[str, pl.Expr] = {}
    for k in spec.return_lags:
        features[f"ret_{k}"] = inside(k, (c / c.shift(k)).log())
    for w in spec.vol_windows:
        features[f"rv_{w}"] = inside(w, sqrt_pos(_rolling_sum(r1 * r1, w)))
    for w in spec.vol_windows:
        features[f"parkinson_{w}"] = inside(w - 1, sqrt_pos(_rolling_sum(hl * hl, w) / (4.0 * LN2 * w)))
    for w in spec.vol_windows:
        features[f"garman_klass_{w}"] = inside(w - 1, sqrt_pos(_rolling_sum(gk, w) / w))
    for w in spec.vol_windows:
        features[f"rogers_satchell_{w}"] = inside(w - 1, sqrt_pos(_rolling_sum(rs, w) / w))
    for w in spec.vol_windows:
        k_yz = yang_zhang_k(w)
        yz = _rolling_var(gap, w) + k_yz * _rolling_var(co, w) + (1.0 - k_yz) * _rolling_sum(rs, w) / w
        features[f"yang_zhang_{w}"] = inside(w, sqrt_pos(yz))
    for w in spec.vol_windows:
        features[f"atr_{w}"] = inside(w - 1, tr.rolling_mean(w) / c)
    features["hl_range"] = hl
    wv = spec.volume_window
    v_std = _rolling_var(v, wv).sqrt()
    features["volume_z"] = inside(wv - 1, pl.when(v_std > 0).then((v - v.rolling_mean(wv)) / v_std).otherwise(0.0))
    minutes = local.dt.hour().cast(pl.Float64) * 60 + local.dt.minute() + local.dt.second() / 60.0 - 570.0
    angle = 2.0 * math.pi * minutes / SESSION_MINUTES
    features["tod_sin"] = angle.sin()
    features["tod_cos"] = angle.cos()
    features["bar_pos"] = _position(c, lo, h)
    wr = max(spec.vol_windows)
    features[f"range_pos_{wr}"] = inside(wr - 1, _position(c, lo.rolling_min(wr), h.rolling_max(wr)))
    traded = _rolling_sum(v, wv)
    vwap = ((h + lo + c) / 3.0 * v).rolling_sum(wv) / traded
    features[f"vwap_dist_{wv}"] = inside(wv - 1, pl.when(traded > 0).then((c / vwap).log()).otherwise(0.0))

    series = ("ticker", "interval")
    sessions = (base.group_by(*keys).agg(first_open=o.first(), last_close=c.last()).sort(*keys)
                .with_columns(prev_close=pl.col("last_close").shift(1).over(series),
                              prev_date=pl.col("date").shift(1).over(series)))
    sessions = sessions.select(*keys, overnight_gap=pl.when((pl.col("date") - pl.col("prev_date")).dt.total_days()
                                                            <= GAP_MAX_DAYS)
                               .then((pl.col("first_open") / pl.col("prev_close")).log()).otherwise(0.0))
    slices = (base.with_columns(bucket=(minutes / VOLUME_BUCKET_MINUTES).floor().cast(pl.Int64), v=pl.col("volume").cast(pl.Float64))
              .group_by(*keys, "bucket").agg(s=pl.col("v").sum(), n=pl.len().cast(pl.Float64)))
    earlier = slices.rename({"date": "earlier", "s": "es", "n": "en"})
    norms = (slices.join(earlier, on=[*series, "bucket"])
             .filter(((pl.col("date") - pl.col("earlier")).dt.total_days()).is_between(1, VOLUME_NORM_DAYS))
             .sort("earlier").group_by(*keys, "bucket").agg(ns=pl.col("es").sum(), nn=pl.col("en").sum()))
    norm = pl.col("ns") / pl.col("nn")
    context = (inputs.with_columns(bucket=(minutes / VOLUME_BUCKET_MINUTES).floor().cast(pl.Int64))
               .join(sessions, on=list(keys), how="left", maintain_order="left")
               .join(norms, on=[*keys, "bucket"], how="left", maintain_order="left")
               .with_columns(volume_tod=pl.when(pl.col("nn") > 0).then(((v + 1.0) / (norm + 1.0)).log()).otherwise(0.0)))

    future = bars.lazy().select(
        "ticker", "interval", pl.col("ts") - pl.duration(minutes=spec.horizon_minutes), fwd_close=c
    )
    fwd = pl.col("fwd_close")
    return (
        _market_context(context.with_columns(**features), spec)
        .join(future, on=["ticker", "interval", "ts"], how="inner", maintain_order="left")
        .with_columns(fwd_ret=(fwd / c).log(), label=(fwd > c).cast(pl.Int32))
        .select(spec.output_columns())
    )


def _market_context(frame: pl.LazyFrame, spec: FeatureSpec) -> pl.LazyFrame:
    """The market context features: an as-of join (backward, within CONTEXT_MAX_LAG_BARS minutes: 1m bars only)
    of each bar with its context ticker's bars of the same interval and session."""
    roles = spec.context_names()
    if not roles:
        return frame
    sectors = dict(spec.sectors)
    own = (frame.filter(pl.col("ticker").is_in(list(spec.index_tickers)))
           .select(pl.col("ticker").alias("_ctx"), "interval", "date", pl.col("ts").alias("_cts"),
                   *(pl.col(c).alias(f"_c{i}") for i, c in enumerate(spec.context_sources())))
           .sort("_cts"))
    k = pl.col(f"ret_{max(spec.return_lags)}")
    for role, names in roles.items():
        ctx = pl.lit(spec.market_ticker) if role == "mkt" else pl.col("ticker").replace_strict(sectors, default=None)
        found = pl.col("_cts").is_not_null()
        frame = (frame.with_columns(_ctx=ctx).sort("ts")
                 .join_asof(own, left_on="ts", right_on="_cts", by=["_ctx", "interval", "date"], strategy="backward",
                            tolerance=f"{CONTEXT_MAX_LAG_BARS}m")
                 .with_columns(**{names[i]: pl.when(found).then(pl.col(f"_c{i}")).otherwise(0.0) for i in range(3)},
                               **{names[3]: pl.when(found).then(k - pl.col("_c1")).otherwise(0.0)})
                 .drop("_ctx", "_cts", "_c0", "_c1", "_c2"))
    return frame


def _position(x: pl.Expr, low: pl.Expr, high: pl.Expr) -> pl.Expr:
    """Where ``x`` sits in ``[low, high]``, 0.5 for an empty range."""
    return pl.when(high > low).then((x - low) / (high - low)).otherwise(0.5)


def _rolling_sum(x: pl.Expr, w: int) -> pl.Expr:
    """Sum of the last ``w`` values; exactly 0 when they all are 0.

    polars' kernel keeps a running sum (add the new value, subtract the old one), so a window of zeros
    after a large value can be left with a residue like 1e-20 instead of the reference's exact 0, which
    ``sqrt`` turns into a visible 1e-10 (flat prices give such windows). An integer running count of the
    non-zero values (exact) finds those windows.
    """
    return pl.when(_rolling_count(x != 0.0, w) == 0).then(0.0).otherwise(x.rolling_sum(w))


def _rolling_var(x: pl.Expr, w: int) -> pl.Expr:
    """Sample variance of the last ``w`` values; exactly 0 on a constant window (same reason as above)."""
    changed = (x != x.shift(1)).fill_null(True)
    return pl.when(_rolling_count(changed, w - 1) == 0).then(0.0).otherwise(x.rolling_var(w))


def _rolling_count(flag: pl.Expr, w: int) -> pl.Expr:
    return flag.cast(pl.UInt32).rolling_sum(w)


# --------------------------------------------------------------------------------- spark engine


def spark_session(app: str = "bench-features"):
    from pyspark.sql import SparkSession

    from hft.config import SPARK_LOCAL_CONF, SPARK_LOCAL_ENV

    os.environ.update(SPARK_LOCAL_ENV)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master("local[2]").appName(app)
    for key, value in {
        **SPARK_LOCAL_CONF,
        "spark.driver.memory": "8g",
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
    }.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def read_spark_bars(spark, path: str):
    from hft.schemas import bar_spark_schema

    return spark.read.schema(bar_spark_schema()).parquet(path)


def spark_features(bars):
    from hft.features.spark import compute_features

    return compute_features(bars, SPEC)


# ------------------------------------------------------------------------------ verification


def compare_tables(
    expected: pd.DataFrame, actual: pd.DataFrame, spec: FeatureSpec = SPEC
) -> tuple[list[str], float]:
    """Differences between two feature tables (none when the rows, keys, nulls are the same and every value
    is within RTOL/ATOL), and the largest difference as a fraction of its tolerance."""
    key = ["ticker", "interval", "ts"]
    e = expected.sort_values(key, kind="stable").reset_index(drop=True)
    a = actual.sort_values(key, kind="stable").reset_index(drop=True)
    if len(e) != len(a):
        return [f"row counts differ: expected {len(e):,}, got {len(a):,}"], math.inf
    problems, worst = [], 0.0
    for col in ("ticker", "interval", "volume", "label"):
        if not (e[col].to_numpy() == a[col].to_numpy()).all():
            problems.append(f"{col}: values differ")
    for col in ("ts", "date"):
        if not (_instants(e[col]) == _instants(a[col])).all():
            problems.append(f"{col}: values differ")
    for col in [*spec.feature_names(), "close", "fwd_ret"]:
        x, y = e[col].to_numpy(np.float64), a[col].to_numpy(np.float64)
        if (np.isnan(x) != np.isnan(y)).any():
            problems.append(f"{col}: null patterns differ in {int((np.isnan(x) != np.isnan(y)).sum()):,} rows")
            continue
        ok = ~np.isnan(x)
        used = np.abs(y[ok] - x[ok]) / (ATOL + RTOL * np.abs(x[ok]))  # > 1: out of tolerance
        worst = max(worst, float(used.max(initial=0.0)))
        bad = used > 1.0
        if bad.any():
            i = int(np.argmax(used))
            problems.append(
                f"{col}: {int(bad.sum()):,} values off by more than rtol {RTOL:g}/atol {ATOL:g} "
                f"(worst: expected {x[ok][i]!r}, got {y[ok][i]!r})"
            )
    return problems, worst


def _instants(values: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(values)
    if getattr(stamps.dt, "tz", None) is None:
        stamps = stamps.dt.tz_localize("UTC")
    return stamps.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")


def verify(path: str, engines: list[str]) -> dict[str, tuple[list[str], float]]:
    """Compare the batched reference, polars and Spark (those benchmarked) with one reference call on every
    row of ``path``."""
    from hft.features.reference import compute_features

    bars = load_pandas(path)
    expected = compute_features(bars, SPEC)
    found: dict[str, tuple[list[str], float]] = {}
    batches = ticker_batches(bars["ticker"].to_numpy(), max(1, len(bars) // 3))
    found[f"reference in {len(batches)} ticker batches"] = compare_tables(expected, reference_features(bars, batches))
    del bars
    if "polars" in engines:
        found["polars"] = compare_tables(expected, polars_features(load_polars(path)).to_pandas())
        gc.collect()
    if any(engine in SPARK_ENGINES for engine in engines):
        spark = spark_session("bench-features-verify")
        try:
            actual = spark_features(read_spark_bars(spark, path)).toPandas()
        finally:
            spark.stop()
        found["spark"] = compare_tables(expected, actual)
    return found


# ------------------------------------------------------------------------------ timing workers


@dataclass
class Timing:
    engine: str
    size: int
    bars: int
    out_rows: int = 0
    runs_s: list[float] = field(default_factory=list)  # wall seconds of every run, warm-up included
    cpu_s: list[float] = field(default_factory=list)  # CPU seconds (all threads; JVM's for Spark) per run
    load: list[float] = field(default_factory=list)  # 1-minute load average when each run started
    jit_s: list[float] = field(default_factory=list)  # Spark: the JVM's JIT compile seconds per run
    warmups: int = 0  # Spark: untimed runs before the timed ones
    cold_s: float = math.nan  # first run
    best_s: float = math.nan  # best of the --repeat timed runs (after the warm-up run for Spark)
    best_cpu_s: float = math.nan  # CPU seconds of that run
    peak_rss_mb: float = math.nan  # worker process (+ JVM for Spark), input loading included
    error: str = ""
    note: str = ""

    def run(self, job, cpu_pid: int | None = None):
        """Time ``job()`` (wall and CPU seconds) and return its result."""
        self.load.append(os.getloadavg()[0])
        cpu, start = _cpu_seconds(cpu_pid), time.perf_counter()
        out = job()
        self.runs_s.append(time.perf_counter() - start)
        self.cpu_s.append(_cpu_seconds(cpu_pid) - cpu)
        return out


def _cpu_seconds(pid: int | None = None) -> float:
    """CPU time of this process (all threads), or of process ``pid`` (read from /proc)."""
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _peak_rss_mb(status: str = "/proc/self/status") -> float:
    with open(status) as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return math.nan


def time_reference(path: str, size: int, bars: int, repeat: int) -> Timing:
    frame = load_pandas(path)
    batches = ticker_batches(frame["ticker"].to_numpy(), REFERENCE_BATCH_BARS)
    result = Timing("reference", size, bars)
    if len(batches) > 1:
        result.note = (
            f"{len(batches)} compute_features calls on batches of whole tickers (<= {REFERENCE_BATCH_BARS:,} "
            "bars each), concatenated; timed together"
        )
    for _ in range(repeat):
        result.out_rows = len(result.run(lambda: reference_features(frame, batches)))
        gc.collect()
    result.peak_rss_mb = _peak_rss_mb()
    return result


def time_polars(path: str, size: int, bars: int, repeat: int) -> Timing:
    frame = load_polars(path)
    result = Timing("polars", size, bars)
    for _ in range(repeat):
        result.out_rows = result.run(lambda: polars_features(frame)).height
        gc.collect()
    result.peak_rss_mb = _peak_rss_mb()
    return result


@dataclass(frozen=True)
class Warmup:
    """When a Spark JVM counts as warm (see the module docstring)."""

    min_runs: int = 3
    max_jit_share: float = 0.15
    max_runs: int = 30

    def done(self, runs: int, jit_s: float, cpu_s: float) -> bool:
        return runs >= self.max_runs or (runs >= self.min_runs and jit_s <= self.max_jit_share * cpu_s)


def time_spark(path: str, size: int, bars: int, repeat: int, cached: bool, warmup: Warmup = Warmup()) -> Timing:
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    spark = spark_session()
    jvm = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    result = Timing("spark-cached" if cached else "spark", size, bars)
    try:
        source = read_spark_bars(spark, path)
        if cached:
            source = source.cache()
            source.count()

        def job(observation=None) -> None:
            features = spark_features(source if cached else read_spark_bars(spark, path))
            if observation is not None:  # counts the output rows on the way (warm-up run only)
                features = features.observe(observation, F.count(F.lit(1)).alias("rows"))
            features.write.format("noop").mode("overwrite").save()

        compiler = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getCompilationMXBean()

        def timed(run) -> None:
            jit_ms = compiler.getTotalCompilationTime()
            result.run(run, cpu_pid=jvm)
            result.jit_s.append((compiler.getTotalCompilationTime() - jit_ms) / 1e3)

        rows = Observation("rows")
        timed(lambda: job(rows))
        result.out_rows = rows.get["rows"]
        while not warmup.done(len(result.runs_s), result.jit_s[-1], result.cpu_s[-1]):
            timed(job)
        result.warmups = len(result.runs_s)
        for _ in range(repeat):
            timed(job)
        result.peak_rss_mb = _peak_rss_mb() + _peak_rss_mb(f"/proc/{jvm}/status")
    finally:
        spark.stop()
    return result


def run_isolated(fn, *args):
    """``fn(*args)`` in a fresh spawned process (its memory, JVM included, is returned when it ends)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def measure(engine: str, path: str, size: int, bars: int, repeat: int, warmup: Warmup = Warmup()) -> Timing:
    if engine == "reference":
        task = (time_reference, path, size, bars, repeat)
    elif engine == "polars":
        task = (time_polars, path, size, bars, repeat)
    else:
        task = (time_spark, path, size, bars, repeat, engine == "spark-cached", warmup)
    try:
        result = run_isolated(*task)
    except BrokenProcessPool:
        return Timing(engine, size, bars, error="worker died (killed, most likely out of memory)")
    except MemoryError:
        return Timing(engine, size, bars, error="out of memory (MemoryError)")
    except Exception as exc:  # noqa: BLE001 - a failed engine is reported, the benchmark goes on
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return Timing(engine, size, bars, error=f"{type(exc).__name__}: {first[:200]}")
    first = result.warmups  # Spark's warm-up runs are not timed runs
    best = min(range(first, len(result.runs_s)), key=result.runs_s.__getitem__)
    result.cold_s, result.best_s, result.best_cpu_s = result.runs_s[0], result.runs_s[best], result.cpu_s[best]
    if result.jit_s:  # how warm "warm" was: HotSpot's compile time during each timed run
        result.note = (
            f"after {result.warmups} warm-up runs, JIT compile time in the timed runs: "
            + ", ".join(f"{j:.2f} s (of {c:.2f} s CPU)" for j, c in zip(result.jit_s[first:], result.cpu_s[first:]))
        )
    return result


# ------------------------------------------------------------------------------------ report


def fastest_baseline(results: list[Timing], size: int) -> Timing | None:
    done = [r for r in results if r.size == size and r.engine in SINGLE_PROCESS and not r.error]
    return min(done, key=lambda r: r.best_s) if done else None


def report(results: list[Timing], sizes: list[int], engines: list[str], repeat: int) -> str:
    loads = [x for r in results for x in r.load]
    lines = [
        "",
        f"Feature computation, 1m bars, FeatureSpec() defaults. best = best of {repeat} run(s); Spark: cold = its "
        "first run, best = best of the runs after its warm-up runs.",
        "reference/polars: input frame already in memory, output materialized in memory. spark: Parquet scan "
        "included, noop sink. spark-cached: input cached in Spark memory, noop sink.",
        "rows/s = input bars / best s; cpu s = CPU seconds of the best run (all threads; the JVM's for Spark); "
        "x fastest = best s / best s of the fastest single-process engine at that size.",
        f"Machine: {os.cpu_count()} CPUs; 1-minute load average at the start of the runs: "
        + (f"{min(loads):.1f} to {max(loads):.1f}" if loads else "n/a"),
        "",
        f"{'size':>4} {'engine':<13} {'bars':>11} {'out rows':>11} {'cold s':>8} {'best s':>8} {'cpu s':>8} "
        f"{'rows/s':>11} {'x fastest':>9} {'peak RSS':>9}",
    ]
    for size in sizes:
        fastest = fastest_baseline(results, size)
        for r in (r for r in results if r.size == size):
            if r.error:
                lines.append(f"{_label(size):>4} {r.engine:<13} {r.bars:>11,}  FAILED: {r.error}")
                continue
            ratio = r.best_s / fastest.best_s if fastest else math.nan
            lines.append(
                f"{_label(size):>4} {r.engine:<13} {r.bars:>11,} {r.out_rows:>11,} {r.cold_s:>8.2f} "
                f"{r.best_s:>8.2f} {r.best_cpu_s:>8.2f} {r.bars / r.best_s:>11,.0f} {ratio:>8.2f}x "
                f"{r.peak_rss_mb / 1024:>8.1f}G"
            )
        lines += [f"     * {r.engine}: {r.note}" for r in results if r.size == size and r.note]
        lines.append("")
    lines.append("Scaling, smallest -> largest size: (time ratio) / (rows ratio); 1.00 = linear")
    for engine in engines:
        done = sorted((r for r in results if r.engine == engine and not r.error), key=lambda r: r.bars)
        if len(done) < 2:
            lines.append(f"  {engine:<13} n/a (fewer than two sizes ran)")
            continue
        small, large = done[0], done[-1]
        rows, secs = large.bars / small.bars, large.best_s / small.best_s
        lines.append(
            f"  {engine:<13} {secs:6.2f}x time for {rows:5.2f}x rows ({small.bars:,} -> {large.bars:,} bars): "
            f"{secs / rows:.2f}"
        )
    lines += ["", f"Target: Spark (warm) within {TARGET_RATIO:g}x of the fastest single-process baseline"]
    for size in sizes:
        fastest = fastest_baseline(results, size)
        for r in (r for r in results if r.size == size and r.engine in SPARK_ENGINES):
            if r.error or fastest is None:
                lines.append(f"  {_label(size):>4} {r.engine:<13} not measured")
                continue
            ratio = r.best_s / fastest.best_s
            lines.append(
                f"  {_label(size):>4} {r.engine:<13} {r.best_s:7.2f}s vs {fastest.engine} {fastest.best_s:.2f}s: "
                f"{ratio:.2f}x -> {'MET' if ratio <= TARGET_RATIO else 'MISSED'}"
            )
    return "\n".join(lines) + "\n"


def _label(size: int) -> str:
    """1000000 -> '1e6', 20000000 -> '2e7' (the size asked for, not the bars generated)."""
    mantissa, exponent = f"{size:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}" if float(f"{size:.0e}") == size else f"{size:,}"


# -------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,5e6,2e7", help="comma-separated bar counts (default 1e6,5e6,2e7)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per engine and size (default 2)")
    parser.add_argument("--spark-warmups", type=int, default=3, help="untimed Spark runs first, at least (default 3)")
    parser.add_argument("--spark-warm-jit", type=float, default=0.15,
                        help="more warm-up runs while a run's JIT time exceeds this share of its CPU (default 0.15)")
    parser.add_argument("--spark-max-warmups", type=int, default=30, help="at most this many warm-up runs (default 30)")
    parser.add_argument("--tickers", type=int, default=200, help="synthetic tickers (default 200)")
    parser.add_argument(
        "--engines", default="reference,polars,spark", help=f"comma-separated, from {', '.join(ALL_ENGINES)}"
    )
    parser.add_argument("--json", type=Path, help="also write the timings as JSON to this path")
    parser.add_argument(
        "--verify-size", default="1e6", help="bars of the set every engine is checked on first (default 1e6)"
    )
    args = parser.parse_args(argv)
    try:
        args.sizes = sorted({int(float(s)) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes must be numbers, got {args.sizes!r}")
    try:
        args.verify_size = int(float(args.verify_size))
    except ValueError:
        parser.error(f"--verify-size must be a number, got {args.verify_size!r}")
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(args.engines) - set(ALL_ENGINES))
    if unknown or not args.engines:
        parser.error(f"unknown engine(s) {', '.join(unknown)}; expected some of {', '.join(ALL_ENGINES)}")
    if not args.sizes or min(*args.sizes, args.verify_size) < args.tickers * 400:
        parser.error("--sizes and --verify-size must be at least --tickers x 400 bars")
    if args.repeat < 1 or args.tickers < 1 or args.spark_warmups < 1:
        parser.error("--repeat, --spark-warmups and --tickers must be >= 1")
    if args.spark_max_warmups < args.spark_warmups or not 0 < args.spark_warm_jit <= 1:
        parser.error("--spark-max-warmups must be >= --spark-warmups, and --spark-warm-jit in (0, 1]")
    args.warmup = Warmup(args.spark_warmups, args.spark_warm_jit, args.spark_max_warmups)
    return args


def ensure_bars(size: int, tickers: int) -> tuple[str, int]:
    """The cached bars of ``size`` (path, count), generated first when missing (e.g. after ``make clean``)."""
    if not bars_path(size, tickers).exists():
        log.info("generating bars for size %s (cached for the next run)", _label(size))
    return run_isolated(generate_bars, size, tickers)


def verify_or_abort(size: int, tickers: int, engines: list[str]) -> bool:
    path, bars = ensure_bars(size, tickers)
    log.info("verifying engines against the reference on %s bars", f"{bars:,}")
    for engine, (problems, worst) in run_isolated(verify, path, engines).items():
        if problems:
            sys.stderr.write(
                f"ABORT: {engine} output differs from hft.features.reference on {path}:\n  "
                + "\n  ".join(problems) + "\n"
            )
            return False
        log.info(
            "  %s == reference on every row and column (rtol %g, atol %g; largest difference %.1f%% of its "
            "tolerance)", engine, RTOL, ATOL, 100 * worst,
        )
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    for size in args.sizes:  # all data first, so generation never runs between two timings
        ensure_bars(size, args.tickers)
    if not verify_or_abort(args.verify_size, args.tickers, args.engines):
        return 1

    results: list[Timing] = []
    for size in args.sizes:
        for engine in args.engines:
            path, bars = ensure_bars(size, args.tickers)
            log.info("timing %s on %s bars", engine, f"{bars:,}")
            result = measure(engine, path, size, bars, args.repeat, args.warmup)
            results.append(result)
            log.info("  %s", result.error or f"runs {', '.join(f'{s:.2f}' for s in result.runs_s)} s")
            if args.json:  # after every measurement, so a cut-off run leaves what it measured
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    sys.stdout.write(report(results, args.sizes, args.engines, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
