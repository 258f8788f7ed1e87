"""numpy/pandas implementation of :mod:`hft.features.definitions` (single process).

The reference the Spark job is tested against, and the engine of the streaming path's per-ticker state.
Windows are evaluated exactly (two-pass, no running sums) so results are comparable to 1e-9.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from hft.data.calendar import exchange_days, minutes_since_open, session_date
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
from hft.schemas import Interval, coerce_bars

_CHUNK = 1 << 20  # rows per block when reducing windows, bounds memory at ~CHUNK * w * 8 bytes


def _rolling(x: np.ndarray, pos: np.ndarray, w: int, reduce) -> np.ndarray:
    """``reduce`` over the last ``w`` values ending at each row, NaN unless the window is full and
    inside one group (``pos`` = index of the row inside its group). NaN inputs propagate."""
    n = len(x)
    out = np.full(n, np.nan)
    if n < w:
        return out
    for start in range(w - 1, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        view = sliding_window_view(x[start - (w - 1) : stop], w)
        out[start:stop] = reduce(view)
    out[pos < w - 1] = np.nan
    return out


def _mean(v: np.ndarray) -> np.ndarray:
    return v.mean(axis=-1)


def _sum(v: np.ndarray) -> np.ndarray:
    return v.sum(axis=-1)


def _var(v: np.ndarray) -> np.ndarray:
    return v.var(axis=-1, ddof=1)


def _min(v: np.ndarray) -> np.ndarray:
    return v.min(axis=-1)


def _max(v: np.ndarray) -> np.ndarray:
    return v.max(axis=-1)


def _position(x: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Where ``x`` sits in ``[low, high]`` (0 at the low, 1 at the high), 0.5 for an empty range; NaN stays."""
    span = high - low
    return np.where(np.isnan(span), np.nan, np.where(span > 0, (x - low) / np.where(span > 0, span, 1.0), 0.5))


def _lag(x: np.ndarray, pos: np.ndarray, k: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    out[k:] = x[:-k]
    out[pos < k] = np.nan
    return out


def _sqrt_pos(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.where(np.isnan(x), np.nan, np.maximum(x, 0.0)))


def compute_features(bars: pd.DataFrame, spec: FeatureSpec = FeatureSpec(), labelled_only: bool = True) -> pd.DataFrame:
    """Feature table for canonical ``bars`` (any number of tickers, one or more intraday intervals).

    Returns :meth:`FeatureSpec.output_columns`, sorted by (ticker, interval, ts), one row per bar that has
    a label, or, with ``labelled_only=False`` (live inference: the future is unknown), one row per bar with
    ``fwd_ret`` NaN and ``label`` -1 where there is no label yet. ``date`` is the New York session date.
    """
    bars = coerce_bars(bars)
    for interval in bars["interval"].unique():
        spec.horizon_bars(interval)  # raises for daily bars or an uneven horizon
    df = bars.sort_values(["ticker", "interval", "ts"], kind="stable").reset_index(drop=True)
    n = len(df)
    if n == 0:
        return _empty(spec)

    ts = df["ts"]
    date = session_date(ts)
    pos = group_positions(pd.MultiIndex.from_arrays([df["ticker"], df["interval"], date]).factorize()[0])
    series, series_keys = pd.MultiIndex.from_arrays([df["ticker"], df["interval"]]).factorize()

    o, h, lo, c = (df[col].to_numpy(np.float64) for col in ("open", "high", "low", "close"))
    out = feature_arrays(o, h, lo, c, df["volume"].to_numpy(np.float64), pos, minutes_since_open(ts), spec,
                         series, exchange_days(ts))

    out.update(context_arrays(series, list(series_keys), ts.dt.as_unit("ns").astype("int64").to_numpy(),
                              exchange_days(ts), out, spec))

    fwd_close = _future_close(df, spec)
    with np.errstate(divide="ignore", invalid="ignore"):
        fwd_ret = np.log(fwd_close / c)
    table = pd.DataFrame(
        {
            "ticker": df["ticker"].to_numpy(),
            "ts": ts.to_numpy(),
            "date": date,
            "interval": df["interval"].to_numpy(),
            "close": c,
            "volume": df["volume"].to_numpy(),
            **out,
            "fwd_ret": fwd_ret,
            "label": np.where(np.isnan(fwd_close), -1, fwd_close > c).astype(np.int32),
        }
    )
    table["ts"] = pd.to_datetime(table["ts"], utc=True)
    keep = ~np.isnan(fwd_close) if labelled_only else np.ones(n, bool)
    return table.loc[keep, spec.output_columns()].reset_index(drop=True)


def group_positions(group: np.ndarray) -> np.ndarray:
    """Index of each row inside its run of equal ``group`` ids (rows sorted so that a group is contiguous)."""
    n = len(group)
    starts = np.r_[True, group[1:] != group[:-1]]
    return np.arange(n) - np.maximum.accumulate(np.where(starts, np.arange(n), 0))


def session_gap(o: np.ndarray, c: np.ndarray, pos: np.ndarray, series: np.ndarray, day: np.ndarray) -> np.ndarray:
    """The overnight gap of each row's session (see :mod:`hft.features.definitions`): the open of the row's
    first bar in its group (``pos`` rows back) over the close of the row just before that one, when that row
    is of the same ``series`` and its session ``day`` at most :data:`GAP_MAX_DAYS` earlier; else 0."""
    first = np.arange(len(o)) - pos
    prev = np.maximum(first - 1, 0)
    ok = (first > 0) & (series[prev] == series) & (day[first] - day[prev] <= GAP_MAX_DAYS)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, np.log(o[first] / c[prev]), 0.0)


def time_bucket(minutes: np.ndarray) -> np.ndarray:
    """The slice of the session (``VOLUME_BUCKET_MINUTES`` long, 0 from 09:30) of each minutes-since-open."""
    return np.floor(np.asarray(minutes, np.float64) / VOLUME_BUCKET_MINUTES).astype(np.int64)


def prior_day_sums(group: np.ndarray, day: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For rows sorted by (``group``, ``day``), one per pair: the sum of ``values`` over the rows of the same
    group whose day is in ``[day - VOLUME_NORM_DAYS, day - 1]`` (0 where none). Each window holds at most
    ``VOLUME_NORM_DAYS`` rows, summed oldest first."""
    out = np.zeros(len(day), np.float64)
    for k in range(VOLUME_NORM_DAYS, 0, -1):  # the row k places back, oldest first
        if k >= len(day):
            continue
        inside = (group[k:] == group[:-k]) & (day[k:] - day[:-k] <= VOLUME_NORM_DAYS)
        out[k:] += np.where(inside, values[:-k], 0.0)
    return out


def volume_norms(series: np.ndarray, day: np.ndarray, minutes: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each bar: the summed volume and the number of its series' bars in the same time-of-day slice on the
    sessions of the ``VOLUME_NORM_DAYS`` days before its own (the norm of ``volume_tod``)."""
    bucket = time_bucket(minutes)
    agg = (pd.DataFrame({"s": series, "b": bucket, "d": day, "v": v})
           .groupby(["s", "b", "d"], sort=True)["v"].agg(["sum", "count"]))
    return norms_from_slices(agg.index, agg["sum"].to_numpy(np.float64), agg["count"].to_numpy(np.float64),
                             series, bucket, day)


def norms_from_slices(slices: pd.MultiIndex, sums: np.ndarray, counts: np.ndarray, series: np.ndarray,
                      bucket: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`volume_norms` from per-slice totals: ``slices`` (series, bucket, day) sorted and unique, with the
    volume ``sums`` and bar ``counts`` of each; the norm of each queried (``series``, ``bucket``, ``day``)
    (0, 0 for a slice not among them). The batch path aggregates its rows; the streaming state keeps the totals."""
    if not len(slices):
        return np.zeros(len(day)), np.zeros(len(day))
    s, b, d = (slices.get_level_values(i).to_numpy(np.int64) for i in range(3))
    group = np.r_[0, np.cumsum((s[1:] != s[:-1]) | (b[1:] != b[:-1]))]
    prior_sums, prior_counts = prior_day_sums(group, d, sums), prior_day_sums(group, d, counts)
    at = slices.get_indexer(pd.MultiIndex.from_arrays([series, bucket, day]))
    found = at >= 0
    return np.where(found, prior_sums[at], 0.0), np.where(found, prior_counts[at], 0.0)


def feature_arrays(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray, pos: np.ndarray,
                   minutes: np.ndarray, spec: FeatureSpec, series: np.ndarray, day: np.ndarray,
                   volume_norm: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Every feature of :meth:`FeatureSpec.feature_names` from float64 columns of bars sorted by series and
    time: ``pos`` is each row's index inside its (ticker, interval, session) group, ``minutes`` its minutes
    since the session's open, ``series`` its (ticker, interval) id and ``day`` its session's day number;
    ``volume_norm``: :func:`volume_norms` of the rows, when the rows do not hold the earlier sessions (the
    streaming state keeps them aside). The formulas' single implementation outside Spark (the batch path and
    the streaming state both call it)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        prev_c = _lag(c, pos, 1)
        r1 = np.log(c / prev_c)
        gap = np.log(o / prev_c)
        hl = np.log(h / lo)
        co = np.log(c / o)
        rs = np.log(h / c) * np.log(h / o) + np.log(lo / c) * np.log(lo / o)
        gk = 0.5 * hl * hl - GK_CO_WEIGHT * co * co
        tr = np.where(np.isnan(prev_c), h - lo, np.maximum(h, prev_c) - np.minimum(lo, prev_c))

    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in spec.return_lags:
            out[f"ret_{k}"] = np.log(c / _lag(c, pos, k))
        for w in spec.vol_windows:
            out[f"rv_{w}"] = _sqrt_pos(_rolling(r1 * r1, pos, w, _sum))
        for w in spec.vol_windows:
            out[f"parkinson_{w}"] = _sqrt_pos(_rolling(hl * hl, pos, w, _sum) / (4.0 * LN2 * w))
        for w in spec.vol_windows:
            out[f"garman_klass_{w}"] = _sqrt_pos(_rolling(gk, pos, w, _mean))
        for w in spec.vol_windows:
            out[f"rogers_satchell_{w}"] = _sqrt_pos(_rolling(rs, pos, w, _mean))
        for w in spec.vol_windows:
            k_yz = yang_zhang_k(w)
            var_gap = _rolling(gap, pos, w, _var)
            var_co = _rolling(co, pos, w, _var)
            mean_rs = _rolling(rs, pos, w, _mean)
            # gap needs a previous close: the window is complete only from the (w+1)-th bar on.
            out[f"yang_zhang_{w}"] = _sqrt_pos(var_gap + k_yz * var_co + (1.0 - k_yz) * mean_rs)
        for w in spec.vol_windows:
            out[f"atr_{w}"] = _rolling(tr, pos, w, _mean) / c
        out["hl_range"] = hl
        wv = spec.volume_window
        v_mean = _rolling(v, pos, wv, _mean)
        v_std = np.sqrt(_rolling(v, pos, wv, _var))
        safe_std = np.where(v_std > 0, v_std, 1.0)
        out["volume_z"] = np.where(np.isnan(v_std), np.nan, np.where(v_std > 0, (v - v_mean) / safe_std, 0.0))
        angle = 2.0 * np.pi * minutes / SESSION_MINUTES
        out["tod_sin"] = np.sin(angle)
        out["tod_cos"] = np.cos(angle)
        out["bar_pos"] = _position(c, lo, h)
        wr = max(spec.vol_windows)
        out[f"range_pos_{wr}"] = _position(c, _rolling(lo, pos, wr, _min), _rolling(h, pos, wr, _max))
        traded = _rolling(v, pos, wv, _sum)
        vwap = _rolling((h + lo + c) / 3.0 * v, pos, wv, _sum) / np.where(traded > 0, traded, 1.0)
        out[f"vwap_dist_{wv}"] = np.where(np.isnan(traded), np.nan, np.where(traded > 0, np.log(c / vwap), 0.0))
    out["overnight_gap"] = session_gap(o, c, pos, series, day)
    norm_sum, norm_count = volume_norms(series, day, minutes, v) if volume_norm is None else volume_norm
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = norm_sum / np.where(norm_count > 0, norm_count, 1.0)
        out["volume_tod"] = np.where(norm_count > 0, np.log((v + 1.0) / (norm + 1.0)), 0.0)

    return out


def context_arrays(series: np.ndarray, keys, ts: np.ndarray, day: np.ndarray, out: dict[str, np.ndarray],
                   spec: FeatureSpec) -> dict[str, np.ndarray]:
    """The market context features (:meth:`FeatureSpec.context_names`) of every row, from the rows' own features
    ``out`` (:func:`feature_arrays`): each row reads the context ticker's row of the same interval and session
    ``day`` stamped at ``ts - j * interval`` for the smallest j in 0..CONTEXT_MAX_LAG_BARS found among the
    rows. ``series``: each row's series id, ``keys[id]`` its (ticker, interval); ``ts`` in nanoseconds; (series,
    ts) unique. The batch path passes every bar; the streaming state the bars that have arrived."""
    roles = spec.context_names()
    if not roles:
        return {}
    n = len(series)
    keys = [(str(t), str(i)) for t, i in keys]
    code_of = {key: c for c, key in enumerate(keys)}
    series = np.asarray(series, np.int64)
    ts = np.asarray(ts, np.int64)
    secs = (ts - (ts.min() if n else 0)) // 1_000_000_000  # seconds since the first row (< 2**40)
    step = np.array([Interval.parse(i).minutes * 60 for _, i in keys], np.int64)[series] if keys else secs
    # per role, each series' context series (-1: none); only the context series' rows are looked up
    targets = {role: np.array([code_of.get((ctx, i), -1) if ctx is not None else -1
                               for ctx, (_, i) in zip(ctxs, keys)], np.int64)
               for role, ctxs in spec.context_tickers([t for t, _ in keys]).items()}
    wanted = np.unique(np.concatenate([t[t >= 0] for t in targets.values()] + [np.empty(0, np.int64)]))
    rows = np.flatnonzero(np.isin(series, wanted))
    index = pd.Index((series[rows] << np.int64(40)) | secs[rows])
    own = [out[name] for name in spec.context_sources()]
    k = max(spec.return_lags)
    result: dict[str, np.ndarray] = {}
    for role, target in targets.items():
        ctx_code = target[series] if len(target) else np.full(n, -1, np.int64)
        found = np.full(n, -1, np.int64)
        for j in range(CONTEXT_MAX_LAG_BARS + 1):
            todo = np.flatnonzero((found < 0) & (ctx_code >= 0))
            if not len(todo):
                break
            when = secs[todo] - j * step[todo]
            at = index.get_indexer((ctx_code[todo] << np.int64(40)) | np.maximum(when, 0))
            at = np.where(at >= 0, rows[np.maximum(at, 0)], -1) if len(rows) else at
            hit = (at >= 0) & (when >= 0) & (day[np.maximum(at, 0)] == day[todo])
            found[todo[hit]] = at[hit]
        has = found >= 0
        names = roles[role]
        for name, values in zip(names[:3], own):
            result[name] = np.where(has, values[np.maximum(found, 0)], 0.0)
        result[names[3]] = np.where(has, out[f"ret_{k}"] - result[names[1]], 0.0)
    return result


def _future_close(df: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Close of the same ticker's bar stamped exactly ``horizon`` later, NaN where there is none.

    ``df`` is sorted by (ticker, interval, ts): one sorted int64 key (series code, epoch micros) and a
    binary search find every match at once.
    """
    series = pd.MultiIndex.from_arrays([df["ticker"], df["interval"]]).factorize()[0].astype(np.int64)
    micros = df["ts"].dt.as_unit("us").astype("int64").to_numpy()
    secs = (micros - micros.min()) // 1_000_000  # < 2**42 s for any real span
    key = (series << np.int64(42)) + secs
    horizon_s = np.int64(spec.horizon_minutes * 60)
    target = key + horizon_s
    idx = np.searchsorted(key, target)
    idx_clipped = np.minimum(idx, len(key) - 1)
    found = (idx < len(key)) & (key[idx_clipped] == target)
    found &= (micros % 1_000_000) == 0  # whole-second stamps only (bars are minute-aligned)
    return np.where(found, df["close"].to_numpy(np.float64)[idx_clipped], np.nan)


def _empty(spec: FeatureSpec) -> pd.DataFrame:
    frame = pd.DataFrame({col: pd.Series(dtype=np.float64) for col in spec.output_columns()})
    frame["ticker"] = frame["ticker"].astype(object)
    frame["interval"] = frame["interval"].astype(object)
    frame["date"] = frame["date"].astype(object)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["volume"] = frame["volume"].astype(np.float64)
    frame["label"] = frame["label"].astype(np.int32)
    return frame
