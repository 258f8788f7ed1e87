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
:data:`hft.config.SPARK_LOCAL_CONF` lifts that limit for every Spark JVM the project starts. It also lets
Spark's cache of compiled classes hold more than this plan's ~120 (100 by default: every run compiled ~90 of
them again, 10 s instead of 4.2 s on 1M bars).
"""

from __future__ import annotations

import math

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hft.data.calendar import EXCHANGE_TZ, REGULAR_OPEN
from hft.errors import HftError
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
from hft.schemas import Interval

#: The window of every feature: a ticker's bars of one session, in time order.
_SESSION = "PARTITION BY ticker, interval, date ORDER BY ts_us"
#: The frame of running aggregates: the session's bars up to this one.
_RUNNING = " ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"

#: Per-bar inputs that are null on a session's first bar (they need the previous close).
_NEEDS_PREVIOUS = {"r1_sq", "gap"}

_SECONDS_PER_DAY = 86_400
_OPEN_MINUTE = REGULAR_OPEN.hour * 60 + REGULAR_OPEN.minute


def _over(fn: str, frame: str = "") -> str:
    return f"{fn} OVER ({_SESSION}{frame})"


def _num(x: float) -> str:
    """A double literal that parses back to exactly ``x`` (repr is the shortest round-trip form)."""
    return f"{float(x)!r}D"


def _full(col: str, w: int, value: str) -> str:
    """``value`` where all ``w`` inputs ``col`` of the window exist, else null.

    Inputs are never null except on a session's first bar for those in ``_NEEDS_PREVIOUS`` (prices are
    validated positive), so "all w present" is a test on the bar's position in its session (``pos``,
    computed once) instead of one more count aggregate per feature."""
    first = w if col in _NEEDS_PREVIOUS else w - 1
    return f"CASE WHEN pos >= {first} THEN {value} END"


def _position(x: str, low: str, high: str) -> str:
    """Where ``x`` sits in ``[low, high]``, 0.5 for an empty range (:func:`hft.features.reference._position`)."""
    return f"CASE WHEN {high} > {low} THEN ({x} - {low}) / ({high} - {low}) ELSE {_num(0.5)} END"


def _sqrt_pos(value: str) -> str:
    return f"sqrt(greatest({value}, {_num(0.0)}))"


def add_session_columns(bars: DataFrame) -> DataFrame:
    """Add ``date`` (New York session date), ``ts_us`` (epoch microseconds, the window order) and
    ``tod_minutes`` (minutes since 09:30 New York time).

    The time zone conversion runs once per bar, to New York wall-clock seconds since the epoch; the date
    and the minutes are integer arithmetic on those, as :func:`hft.data.calendar.minutes_since_open` does.
    (``to_date``/``hour``/``minute``/``second`` on the local timestamp each convert it to a
    ``LocalDateTime`` again: with them, time zone work was 15% of the job's CPU.)"""
    local_s = f"unix_seconds(from_utc_timestamp(ts, '{EXCHANGE_TZ}'))"
    day = f"floor(local_s / {_SECONDS_PER_DAY})"
    return bars.selectExpr("*", f"{local_s} AS local_s").selectExpr(
        *bars.columns,
        f"date_from_unix_date(CAST({day} AS INT)) AS date",
        "unix_micros(ts) AS ts_us",
        f"(local_s - {day} * {_SECONDS_PER_DAY}) / {_num(60.0)} - {_OPEN_MINUTE} AS tod_minutes",
    )


#: The time-of-day slice of a bar (:func:`hft.features.reference.time_bucket`).
_BUCKET = f"CAST(floor(tod_minutes / {_num(VOLUME_BUCKET_MINUTES)}) AS BIGINT)"


def session_context(bars: DataFrame) -> DataFrame:
    """What each session's bars read of the series' earlier sessions, one row per session of bars with
    :func:`add_session_columns`: ``ticker, interval, date``, ``overnight_gap``
    (:func:`hft.features.reference.session_gap`) and the time-of-day volume norm as maps from slice to summed
    volume and bar count (``norm_sums``, ``norm_counts``: :func:`hft.features.reference.volume_norms`).

    One aggregate of the bars per (session, slice), and both features from its small output in one lineage
    (one more scan of the bars, not one per feature): the norm from a range window of ``VOLUME_NORM_DAYS`` days
    over each series and slice, then per session the first open and last close, lagged one session over each
    series for the gap. Joined back to the bars on the window's own keys (a broadcast of one row per session),
    where a window over each whole series would sort every bar again."""
    slices = bars.selectExpr("ticker", "interval", "date", "ts_us", "open", "close", f"{_BUCKET} AS bucket",
                             "CAST(volume AS DOUBLE) AS v").groupBy("ticker", "interval", "date", "bucket").agg(
        F.expr("min_by(open, ts_us)").alias("first_open"), F.min("ts_us").alias("first_ts"),
        F.expr("max_by(close, ts_us)").alias("last_close"), F.max("ts_us").alias("last_ts"),
        F.sum("v").alias("s"), F.count(F.lit(1)).alias("n"))
    prior = (f"OVER (PARTITION BY ticker, interval, bucket ORDER BY unix_date(date) "
             f"RANGE BETWEEN {VOLUME_NORM_DAYS} PRECEDING AND 1 PRECEDING)")
    per_session = slices.selectExpr(
        "*", f"coalesce(sum(s) {prior}, {_num(0.0)}) AS ns", f"coalesce(sum(n) {prior}, 0) AS nc",
    ).groupBy("ticker", "interval", "date").agg(
        F.expr("min_by(first_open, first_ts)").alias("first_open"),
        F.expr("max_by(last_close, last_ts)").alias("last_close"),
        F.expr("map_from_entries(collect_list(struct(bucket, ns)))").alias("norm_sums"),
        F.expr("map_from_entries(collect_list(struct(bucket, nc)))").alias("norm_counts"))
    previous = "OVER (PARTITION BY ticker, interval ORDER BY date)"
    return per_session.selectExpr(
        "ticker", "interval", "date", "norm_sums", "norm_counts",
        f"CASE WHEN datediff(date, lag(date, 1) {previous}) <= {GAP_MAX_DAYS} "
        f"THEN ln(first_open / lag(last_close, 1) {previous}) ELSE {_num(0.0)} END AS overnight_gap",
    )


def sql_string(value: str) -> str:
    """``value`` as a Spark SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _context_rows(sessions: DataFrame, spec: FeatureSpec) -> DataFrame:
    """The context tickers' bars (few: the filter on the partitioning column reaches the scan)."""
    return sessions.where(F.col("ticker").isin(list(spec.index_tickers)))


def _context_sources(rows: DataFrame, spec: FeatureSpec) -> DataFrame:
    """``rows`` with the features the context copies (:meth:`FeatureSpec.context_sources`: ret_k1, ret_K, rv_W),
    in a small window plan of their own (the whole :func:`_windowed` plan a second time, for a few rows, cost
    more than the rest of the job: its generated code is compiled again)."""
    k1, k, w = min(spec.return_lags), max(spec.return_lags), max(spec.vol_windows)
    lags = sorted({1, k1, k})
    df = rows.selectExpr("*", *(f"{_over(f'lag(close, {j})')} AS close_{j}" for j in lags),
                         f"{_over('row_number()')} - 1 AS pos")
    df = df.selectExpr("*", "ln(close / close_1) * ln(close / close_1) AS r1_sq")
    frame = f" ROWS BETWEEN {w - 1} PRECEDING AND CURRENT ROW"
    return df.selectExpr("*", f"ln(close / close_{k1}) AS ret_{k1}", *([f"ln(close / close_{k}) AS ret_{k}"] if k != k1 else []),
                         f"{_full('r1_sq', w, _sqrt_pos(_over('sum(r1_sq)', frame)))} AS rv_{w}")


def _with_context_values(sessions: DataFrame, context: DataFrame, spec: FeatureSpec) -> DataFrame:
    """``sessions`` with, per context role, the context bar's own ret_k1, ret_K, rv_W (``_{role}_c0..2``) and
    whether there is one (``_{role}_found``): :func:`hft.features.reference.context_arrays`.

    ``context``: the context tickers' bars with their features (few). Each stands for its own time and the
    next ``CONTEXT_MAX_LAG_BARS`` bar times (``cts + j * interval``); per time the one with the smallest j (the
    newest at or before it), broadcast and joined to every bar on its time before the windows."""
    own = spec.context_sources()
    ctx = context.selectExpr("ticker AS ctx", "interval", "date", "ts_us AS cts",
                             *(f"{c} AS c{i}" for i, c in enumerate(own)))
    step = "CASE interval " + " ".join(f"WHEN {sql_string(i.value)} THEN {i.minutes * 60_000_000}"
                                       for i in Interval if i.intraday) + " END"
    # each context bar stands for the times of its next CONTEXT_MAX_LAG_BARS bars too; per time, the newest
    matched = (ctx.selectExpr("*", f"explode(sequence(0, {CONTEXT_MAX_LAG_BARS})) AS j")
               .selectExpr("*", f"cts + j * {step} AS ts_us")
               .groupBy("ctx", "interval", "date", "ts_us")
               .agg(F.expr(f"min_by(struct({', '.join(f'c{i}' for i in range(len(own)))}), j)").alias("c")))
    sectors = dict(spec.sectors)
    for role in spec.context_names():
        if role == "mkt":
            target = sql_string(spec.market_ticker or "")
        else:
            pairs = ", ".join(f"{sql_string(t)}, {sql_string(e)}" for t, e in sorted(sectors.items()))
            target = f"try_element_at(map({pairs}), ticker)"
        found = F.broadcast(matched.withColumnRenamed("ctx", "_ctx").withColumnRenamed("c", "_c"))
        sessions = sessions.selectExpr("*", f"{target} AS _ctx").join(
            found, ["_ctx", "interval", "date", "ts_us"], "left").selectExpr(
            *(c for c in sessions.columns), f"_c IS NOT NULL AS _{role}_found",
            *(f"_c.c{i} AS _{role}_c{i}" for i in range(len(own))))
    return sessions


def _context_features(spec: FeatureSpec) -> list[str]:
    """The context features' expressions over the columns of :func:`_with_context_values` (0 without a context
    bar; the relative return from the bar's own ret_K)."""
    k = f"ret_{max(spec.return_lags)}"
    out = []
    for role, names in spec.context_names().items():
        found = f"_{role}_found"
        out += [f"CASE WHEN {found} THEN _{role}_c{i} ELSE {_num(0.0)} END AS {names[i]}" for i in range(3)]
        out.append(f"CASE WHEN {found} THEN {k} - _{role}_c1 ELSE {_num(0.0)} END AS {names[3]}")
    return out


def compute_features(bars: DataFrame, spec: FeatureSpec = FeatureSpec()) -> DataFrame:
    """Feature table of canonical ``bars`` (columns of :data:`hft.schemas.BAR_SPARK_DDL`).

    Same rows and values as :func:`hft.features.reference.compute_features`: only bars with a label. The
    market context's values are joined to the bars before the windows (:func:`_with_context_values`), the
    session context after them (:func:`session_context`); :func:`_windowed` holds the window passes:

    Three window passes over the sorted sessions, all on the same partitioning and order (one shuffle, one
    sort): the previous close; the running sums of the per-bar terms (and the bar's position, a running
    count in the same frame); and those running sums ``w`` bars earlier, ``lag(S, w)``, so that a window's
    sum is ``S_t - S_{t-w}``, with the other lagged closes and the close ``horizon`` later. Spark evaluates
    the functions of a pass that share a frame (the running ones; the lags of one offset) together, so
    each pass has as few frames as it can. ``lag(S_t, w)`` is bit for bit the running sum at that bar, and
    costs less than a second aggregate frame ``ROWS BETWEEN UNBOUNDED PRECEDING AND w PRECEDING`` per
    window (two passes in all): in interleaved runs on 1M bars, those frames cost 3-9% more CPU, and putting
    the position and the lagged closes in a pass of their own 2-11% more. The formulas are SQL expressions, one ``selectExpr`` per
    dependency level: built with Column objects, the plan took ~5,700 py4j round trips (0.6-1 s of a 1M-bar
    job) before Spark did any work.
    """
    sessions = add_session_columns(bars)
    plain = sessions
    if spec.context_names():  # the context's values joined to the bars before the windows (a narrow stage)
        sessions = _with_context_values(sessions, _context_sources(_context_rows(sessions, spec), spec), spec)
    df = _windowed(sessions, spec)
    df = df.selectExpr("*", *_context_features(spec))
    df = df.where("fwd_close IS NOT NULL").join(session_context(plain), ["ticker", "interval", "date"])
    df = df.selectExpr("*", f"{_BUCKET} AS bucket").selectExpr(
        "*", "coalesce(element_at(norm_counts, bucket), 0) AS norm_n", "element_at(norm_sums, bucket) AS norm_s")
    df = df.selectExpr("*", f"CASE WHEN norm_n > 0 THEN ln((v + {_num(1.0)}) / (norm_s / norm_n + {_num(1.0)})) "
                            f"ELSE {_num(0.0)} END AS volume_tod")
    labels = {"fwd_ret": "ln(fwd_close / close) AS fwd_ret", "label": "CAST(fwd_close > close AS INT) AS label"}
    return df.selectExpr(*(labels.get(c, c) for c in spec.output_columns()))


def _windowed(sessions: DataFrame, spec: FeatureSpec) -> DataFrame:
    """The bars of ``sessions`` (:func:`add_session_columns`) with every per-session windowed feature and
    ``fwd_close`` (the passes of :func:`compute_features`)."""
    horizon_us = spec.horizon_minutes * 60 * 1_000_000
    df = sessions.selectExpr("*", f"{_over('lag(close, 1)')} AS close_1")
    df = df.selectExpr(
        "*",
        "ln(close / close_1) AS r1",
        "ln(open / close_1) AS gap",
        "ln(high / low) AS hl",
        "ln(close / open) AS co",
        "ln(high / close) * ln(high / open) + ln(low / close) * ln(low / open) AS rs",
        "CASE WHEN close_1 IS NULL THEN high - low ELSE greatest(high, close_1) - least(low, close_1) END AS tr",
        "CAST(volume AS DOUBLE) AS v",
        f"(high + low + close) / {_num(3.0)} * CAST(volume AS DOUBLE) AS pv",
    )
    squares = [f"{c} * {c} AS {c}_sq" for c in ("r1", "hl", "gap", "co", "v")]
    df = df.selectExpr("*", *squares, f"{_num(0.5)} * hl * hl - {_num(GK_CO_WEIGHT)} * co * co AS gk")

    sums: dict[str, str] = {}  # column -> its running sum, registered by the formulas that use it
    lagged: dict[str, str] = {}  # column -> a running sum w bars earlier

    def wsum(col: str, w: int) -> str:
        """Sum of ``col`` over the session's last ``w`` bars (its first bars at a session's start)."""
        sums.setdefault(f"sum_{col}", _over(f"sum({col})", _RUNNING))
        lagged.setdefault(f"sum_{col}_{w}", _over(f"lag(sum_{col}, {w})"))
        return f"(sum_{col} - coalesce(sum_{col}_{w}, {_num(0.0)}))"

    def wmean(col: str, w: int) -> str:
        return f"({wsum(col, w)} / {w})"

    def wvar(col: str, w: int) -> str:
        """Sample variance (ddof 1) over the last ``w`` bars."""
        total = wsum(col, w)
        return f"(({wsum(f'{col}_sq', w)} - {total} * {total} / {w}) / {w - 1})"

    features: dict[str, str] = {}
    for k in spec.return_lags:
        features[f"ret_{k}"] = f"ln(close / close_{k})"
    for w in spec.vol_windows:
        features[f"rv_{w}"] = _full("r1_sq", w, _sqrt_pos(wsum("r1_sq", w)))
    for w in spec.vol_windows:
        features[f"parkinson_{w}"] = _full("hl_sq", w, _sqrt_pos(f"{wsum('hl_sq', w)} / {_num(4.0 * LN2 * w)}"))
    for w in spec.vol_windows:
        features[f"garman_klass_{w}"] = _full("gk", w, _sqrt_pos(wmean("gk", w)))
    for w in spec.vol_windows:
        features[f"rogers_satchell_{w}"] = _full("rs", w, _sqrt_pos(wmean("rs", w)))
    for w in spec.vol_windows:
        k_yz = yang_zhang_k(w)
        yz = f"{wvar('gap', w)} + {_num(k_yz)} * {wvar('co', w)} + {_num(1.0 - k_yz)} * {wmean('rs', w)}"
        features[f"yang_zhang_{w}"] = _full("gap", w, _sqrt_pos(yz))
    for w in spec.vol_windows:
        features[f"atr_{w}"] = _full("tr", w, f"{wmean('tr', w)} / close")
    features["hl_range"] = "hl"
    wv = spec.volume_window
    v_var = wvar("v", wv)
    features["volume_z"] = _full("v", wv, f"CASE WHEN {v_var} > 0 THEN (v - {wmean('v', wv)}) / sqrt({v_var})"
                                          f" ELSE {_num(0.0)} END")
    angle = f"tod_minutes * {_num(2.0 * math.pi / SESSION_MINUTES)}"
    features["tod_sin"] = f"sin({angle})"
    features["tod_cos"] = f"cos({angle})"
    features["bar_pos"] = _position("close", "low", "high")
    wr = max(spec.vol_windows)
    # min and max are no sums: a sliding frame of their own (same partitioning and order: no extra sort)
    extremes = {f"low_min_{wr}": _over("min(low)", f" ROWS BETWEEN {wr - 1} PRECEDING AND CURRENT ROW"),
                f"high_max_{wr}": _over("max(high)", f" ROWS BETWEEN {wr - 1} PRECEDING AND CURRENT ROW")}
    features[f"range_pos_{wr}"] = _full("low", wr, _position("close", f"low_min_{wr}", f"high_max_{wr}"))
    traded = wsum("v", wv)
    features[f"vwap_dist_{wv}"] = _full("v", wv, f"CASE WHEN {traded} > 0 THEN ln(close / ({wsum('pv', wv)} / {traded}))"
                                                 f" ELSE {_num(0.0)} END")

    # The bar's index in its session: a running count, evaluated with the running sums (row_number() would
    # be a frame of its own).
    pos = f"{_over('sum(1)', _RUNNING)} - 1 AS pos"
    df = df.selectExpr("*", *(f"{expr} AS {name}" for name, expr in sums.items()), pos,
                       *(f"{expr} AS {name}" for name, expr in extremes.items()))
    df = df.selectExpr(
        "*",
        *(f"{expr} AS {name}" for name, expr in lagged.items()),
        *(f"{_over(f'lag(close, {k})')} AS close_{k}" for k in spec.return_lags if k != 1),
        _over("first(close)", f" RANGE BETWEEN {horizon_us} FOLLOWING AND {horizon_us} FOLLOWING") + " AS fwd_close",
    )
    return df.selectExpr("*", *(f"{expr} AS {name}" for name, expr in features.items()))


class NoBarsError(HftError, ValueError):
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
        F.col("volume").cast("double"),
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
