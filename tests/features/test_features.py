"""Feature formulas: hand-checked values, no look-ahead, labels, and Spark == reference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hft.data.calendar import minutes_since_open, session_date
from hft.features.definitions import FeatureSpec
from hft.features.reference import compute_features
from hft.schemas import bar_spark_schema, coerce_bars

SPEC = FeatureSpec()


def _one_session(bars_factory, ticker="AAA"):
    bars = bars_factory(tickers=(ticker,), start="2024-03-08", end="2024-03-08")
    return coerce_bars(bars)


def test_reference_values_match_hand_computed_formulas(bars_factory):
    bars = _one_session(bars_factory)
    feats = compute_features(bars).set_index("ts")
    t = bars["ts"].iloc[100]
    row = feats.loc[t]
    win = bars.iloc[100 - 4 : 101]  # 5 bars ending at t
    c, o, h, lo = (bars[col].to_numpy() for col in ("close", "open", "high", "low"))
    assert row["ret_5"] == pytest.approx(math.log(c[100] / c[95]), rel=1e-12)
    r1 = np.log(c[96:101] / c[95:100])
    assert row["rv_5"] == pytest.approx(math.sqrt((r1**2).sum()), rel=1e-12)
    hl = np.log(win["high"] / win["low"]).to_numpy()
    assert row["parkinson_5"] == pytest.approx(math.sqrt((hl**2).sum() / (4 * math.log(2) * 5)), rel=1e-12)
    tr = np.maximum(h[96:101], c[95:100]) - np.minimum(lo[96:101], c[95:100])
    assert row["atr_5"] == pytest.approx(tr.mean() / c[100], rel=1e-12)
    gap, co = np.log(o[96:101] / c[95:100]), np.log(c[96:101] / o[96:101])
    rs = np.log(h / c) * np.log(h / o) + np.log(lo / c) * np.log(lo / o)
    k = 0.34 / (1.34 + 6 / 4)
    yz = gap.var(ddof=1) + k * co.var(ddof=1) + (1 - k) * rs[96:101].mean()
    assert row["yang_zhang_5"] == pytest.approx(math.sqrt(max(yz, 0)), rel=1e-12)
    # 2024-03-08 is EST (UTC-5): bar 100 is 11:10 New York, 100 minutes after the open.
    assert row["tod_sin"] == pytest.approx(math.sin(2 * math.pi * 100 / 390), rel=1e-12)
    assert row["label"] == int(c[105] > c[100])
    assert row["fwd_ret"] == pytest.approx(math.log(c[105] / c[100]), rel=1e-12)


def test_reference_position_and_vwap_features_match_hand_computed_values(bars_factory):
    bars = _one_session(bars_factory)
    feats = compute_features(bars).set_index("ts")
    c, h, lo, v = (bars[col].to_numpy(float) for col in ("close", "high", "low", "volume"))
    row = feats.loc[bars["ts"].iloc[100]]
    assert row["bar_pos"] == pytest.approx((c[100] - lo[100]) / (h[100] - lo[100]), rel=1e-12)
    low, high = lo[71:101].min(), h[71:101].max()  # the 30 bars ending at t
    assert row["range_pos_30"] == pytest.approx((c[100] - low) / (high - low), rel=1e-12)
    typical = (h[71:101] + lo[71:101] + c[71:101]) / 3
    vwap = (typical * v[71:101]).sum() / v[71:101].sum()
    assert row["vwap_dist_30"] == pytest.approx(math.log(c[100] / vwap), rel=1e-9)
    assert 0 <= feats["bar_pos"].min() and feats["bar_pos"].max() <= 1
    assert feats["range_pos_30"].iloc[:29].isna().all() and feats["range_pos_30"].iloc[29:].between(0, 1).all()
    assert feats["vwap_dist_30"].iloc[:29].isna().all() and feats["vwap_dist_30"].iloc[29:].notna().all()


def test_reference_flat_bars_and_windows_without_volume_have_defined_positions(bars_factory):
    bars = _one_session(bars_factory)
    flat = bars.index[60:100]  # 40 bars that did not trade: one price, no volume
    price = bars.loc[flat[0], "close"]
    bars.loc[flat, ["open", "high", "low", "close"]] = price
    bars.loc[flat, "volume"] = 0
    feats = compute_features(bars).set_index("ts")
    inside = feats.loc[bars.loc[flat[35:], "ts"]]  # windows of 30 bars all inside the flat stretch
    assert (inside["bar_pos"] == 0.5).all() and (inside["range_pos_30"] == 0.5).all()
    assert (inside["vwap_dist_30"] == 0.0).all()  # nothing traded: no distance, not a division by zero


def test_reference_overnight_gap_is_the_sessions_first_open_over_the_previous_sessions_last_close(bars_factory):
    # Thursday, Friday, then Monday (over the weekend), and 2024-03-20 after eight days without a session
    bars = coerce_bars(pd.concat([bars_factory(tickers=("AAA", "BBB"), start="2024-03-07", end="2024-03-11"),
                                  bars_factory(tickers=("AAA",), start="2024-03-20", end="2024-03-20", seed=4)]))
    bars = bars[~((bars["ticker"] == "AAA") & (bars["ts"] == bars["ts"].min()))]  # AAA's first bar is missing
    feats = compute_features(bars, labelled_only=False)
    for ticker in ("AAA", "BBB"):
        mine = bars[bars["ticker"] == ticker]
        days = session_date(mine["ts"])
        rows = feats[feats["ticker"] == ticker]
        assert (rows.groupby("date")["overnight_gap"].nunique() == 1).all()  # one value per session
        per_day = rows.groupby("date")["overnight_gap"].first()
        dates = sorted(set(days))
        assert per_day[dates[0]] == 0.0  # the series' first session: no gap known
        for before, day in zip(dates, dates[1:]):
            first_open = mine.loc[days == day, "open"].iloc[0]
            last_close = mine.loc[days == before, "close"].iloc[-1]
            expected = math.log(first_open / last_close) if (day - before).days <= 7 else 0.0
            assert per_day[day] == pytest.approx(expected, rel=1e-12, abs=0), (ticker, day)
    assert feats.loc[feats["date"] == pd.Timestamp("2024-03-20").date(), "overnight_gap"].eq(0.0).all()
    assert feats.loc[feats["date"] == pd.Timestamp("2024-03-11").date(), "overnight_gap"].ne(0.0).all()


def test_reference_volume_tod_compares_a_bar_with_its_slice_of_the_day_over_the_previous_two_weeks(bars_factory):
    bars = coerce_bars(pd.concat([bars_factory(tickers=("AAA", "BBB"), start="2024-03-01", end="2024-03-19"),
                                  bars_factory(tickers=("AAA",), start="2024-04-15", end="2024-04-15", seed=4)]))
    bars = bars.assign(volume=bars["volume"] * np.random.default_rng(2).uniform(0.2, 3.0, len(bars)))
    feats = compute_features(bars, labelled_only=False).set_index(["ticker", "ts"])
    aaa = bars[bars["ticker"] == "AAA"].reset_index(drop=True)
    days = np.array([d.toordinal() for d in session_date(aaa["ts"])])
    bucket = np.floor(minutes_since_open(aaa["ts"]) / 30).astype(int)
    checked = 0
    for i in np.random.default_rng(0).choice(len(aaa), 40, replace=False):
        prior = (bucket == bucket[i]) & (days < days[i]) & (days >= days[i] - 14)
        got = feats.loc[("AAA", aaa["ts"][i]), "volume_tod"]
        if prior.any():
            norm = aaa["volume"][prior].mean()
            assert got == pytest.approx(math.log((aaa["volume"][i] + 1) / (norm + 1)), rel=1e-9, abs=1e-12)
            checked += 1
        else:
            assert got == 0.0  # the first session, and 2024-04-15 (nothing in the two weeks before)
    assert checked > 20
    first = feats.xs("AAA").loc[lambda f: f["date"] == pd.Timestamp("2024-03-01").date(), "volume_tod"]
    assert (first == 0.0).all()


def test_reference_market_context_reads_the_index_bar_of_the_same_minute_or_the_newest_of_the_last_five(bars_factory):
    spec = FeatureSpec(sectors=(("AAA", "XLK"),))
    bars = coerce_bars(pd.concat([bars_factory(tickers=("AAA", "BBB", "SPY", "XLK"), start="2024-03-07",
                                               end="2024-03-08"),
                                  bars_factory(tickers=("AAA", "SPY"), start="2024-03-08", end="2024-03-08",
                                               interval="5m", seed=3)]))
    one = (bars["interval"] == "1m").to_numpy()
    spy_1m = bars.index[one & (bars["ticker"] == "SPY").to_numpy()]
    missing = np.r_[spy_1m[100:103], spy_1m[200:207], spy_1m[390 + 50 : 390 + 52]]  # 3, then 7 in a row, then 2
    bars = bars.drop(missing).reset_index(drop=True)
    feats = compute_features(bars, spec, labelled_only=False).set_index(["ticker", "interval", "ts"])
    assert spec.context_names() == {"mkt": ("mkt_ret_1", "mkt_ret_15", "mkt_rv_30", "mkt_rel_15"),
                                    "sec": ("sec_ret_1", "sec_ret_15", "sec_rv_30", "sec_rel_15")}
    ctx = {"mkt": "SPY", "sec": "XLK"}
    checked = {"same minute": 0, "older": 0, "none": 0}
    for (ticker, interval, ts), row in feats.iterrows():
        for role, names in spec.context_names().items():
            source = ctx[role] if role == "mkt" or ticker == "AAA" else None
            step = pd.Timedelta(interval.replace("m", "min"))
            found = next((ts - j * step for j in range(6) if source is not None
                          and (source, interval, ts - j * step) in feats.index), None)
            got = row[list(names)].to_numpy(float)
            if found is None:
                assert (got == 0.0).all(), (ticker, ts, role)
                checked["none"] += source is not None
                continue
            checked["same minute" if found == ts else "older"] += 1
            own = feats.loc[(source, interval, found), ["ret_1", "ret_15", "rv_30"]].to_numpy(float)
            np.testing.assert_array_equal(got[:3], own)
            np.testing.assert_allclose(got[3], row["ret_15"] - own[1], rtol=0, atol=0)
    assert checked["older"] >= 3 * 4  # the 3 missing minutes, for AAA, BBB, XLK (mkt) and AAA (sec)
    assert checked["none"] >= 4 * 1  # the 7th minute in a row of SPY missing, and the 5m XLK that is not
    assert checked["same minute"] > 4000
    # the index ETF reads itself, a ticker without a sector has no sector context, 5m bars read 5m bars
    spy = feats.xs("SPY", level="ticker")
    assert (spy["mkt_rel_15"].dropna() == 0).all() and (spy["sec_ret_1"] == 0).all()
    assert (feats.xs("BBB", level="ticker")[["sec_ret_1", "sec_rv_30", "sec_rel_15"]] == 0).all().all()
    five = feats.xs(("AAA", "5m"), level=("ticker", "interval"))
    spy_five = feats.xs(("SPY", "5m"), level=("ticker", "interval"))
    np.testing.assert_array_equal(five["mkt_ret_15"].to_numpy(), spy_five.loc[five.index, "ret_15"].to_numpy())
    assert (five["sec_ret_1"] == 0).all()  # no 5m XLK bars
    # the same rows without a market ticker or sectors: no context columns at all
    plain = FeatureSpec(market_ticker=None)
    assert not any(n.startswith(("mkt_", "sec_")) for n in plain.feature_names())
    assert "mkt_ret_1" not in compute_features(bars, plain).columns


def test_feature_spec_refuses_an_ambiguous_sector_map():
    with pytest.raises(ValueError, match="twice"):
        FeatureSpec(sectors=(("AAA", "XLK"), ("AAA", "XLF")))
    with pytest.raises(ValueError, match="upper-case"):
        FeatureSpec(market_ticker="spy")


def test_feature_spec_from_env_reads_the_market_ticker_and_the_sector_map(monkeypatch):
    monkeypatch.delenv("HFT_MARKET_TICKER", raising=False)
    monkeypatch.delenv("HFT_SECTORS", raising=False)
    assert FeatureSpec.from_env() == FeatureSpec()
    monkeypatch.setenv("HFT_SECTORS", " aapl:xlk, JPM:XLF ,")
    monkeypatch.setenv("HFT_MARKET_TICKER", "qqq")
    spec = FeatureSpec.from_env(horizon_minutes=10)
    assert (spec.market_ticker, spec.sectors, spec.horizon_minutes) == ("QQQ", (("AAPL", "XLK"), ("JPM", "XLF")), 10)
    assert spec.with_context(["AAPL", "MSFT"]) == ["AAPL", "MSFT", "QQQ", "XLK"]
    assert {"mkt_rel_15", "sec_rel_15"} <= set(spec.feature_names())
    monkeypatch.setenv("HFT_MARKET_TICKER", "None")
    assert FeatureSpec.from_env().context_names().keys() == {"sec"}
    for name, value, message in [("HFT_SECTORS", "AAPL=XLK", "TICKER:ETF"), ("HFT_SECTORS", "AAPL:XLK:XLF", "TICKER:ETF"),
                                 ("HFT_SECTORS", "AAPL:XLK,AAPL:XLF", "twice"), ("HFT_SECTORS", "A$PL:XLK", "invalid ticker"),
                                 ("HFT_SECTORS", ":XLK", "no tickers"), ("HFT_MARKET_TICKER", "SPY,QQQ", "one ticker"),
                                 ("HFT_MARKET_TICKER", "SP Y", "invalid ticker")]:
        monkeypatch.setenv("HFT_MARKET_TICKER", "SPY")
        monkeypatch.setenv("HFT_SECTORS", "")
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError, match=message) as raised:
            FeatureSpec.from_env()
        assert name in str(raised.value)


def test_reference_session_start_features_are_null_until_window_full(bars_factory):
    feats = compute_features(_one_session(bars_factory))
    assert feats["ret_1"].iloc[0] != feats["ret_1"].iloc[0]  # NaN on the session's first bar
    assert feats["rv_30"].iloc[:30].isna().all() and feats["rv_30"].iloc[30:].notna().all()
    assert feats["parkinson_30"].iloc[:29].isna().all() and feats["parkinson_30"].iloc[29:].notna().all()
    assert feats["yang_zhang_30"].iloc[:30].isna().all() and feats["yang_zhang_30"].iloc[30:].notna().all()


def test_reference_windows_do_not_cross_sessions(bars_factory):
    bars = coerce_bars(bars_factory(tickers=("AAA",), start="2024-03-07", end="2024-03-08"))
    feats = compute_features(bars)
    second_day = feats[feats["date"] == pd.Timestamp("2024-03-08").date()]
    assert second_day["ret_1"].iloc[0] != second_day["ret_1"].iloc[0]
    assert second_day["rv_5"].iloc[:5].isna().all()


def test_reference_label_with_missing_future_bar_drops_row(bars_factory):
    bars = _one_session(bars_factory)
    missing = bars["ts"].iloc[50]
    feats = compute_features(bars[bars["ts"] != missing])
    labelled = set(feats["ts"])
    assert missing - pd.Timedelta(minutes=5) not in labelled
    assert missing - pd.Timedelta(minutes=4) in labelled
    # The last 5 bars of the session have no full horizon.
    assert bars["ts"].iloc[-1] not in labelled and bars["ts"].iloc[-5] not in labelled
    assert bars["ts"].iloc[-6] in labelled


def test_reference_label_on_5m_bars_uses_one_bar_ahead(bars_factory):
    bars = coerce_bars(bars_factory(tickers=("AAA",), start="2024-03-08", end="2024-03-08", interval="5m"))
    feats = compute_features(bars)
    assert len(feats) == len(bars) - 1
    c = bars["close"].to_numpy()
    np.testing.assert_array_equal(feats["label"].to_numpy(), (c[1:] > c[:-1]).astype(int))


def test_reference_daily_bars_raise_clear_error(bars_factory):
    bars = coerce_bars(bars_factory(tickers=("AAA",), start="2024-03-08", end="2024-03-08")).assign(interval="1d")
    with pytest.raises(ValueError, match="intraday"):
        compute_features(bars)


def test_reference_features_at_t_unchanged_when_future_bars_altered(bars_factory):
    spec = FeatureSpec(sectors=(("AAA", "BBB"),))
    bars = coerce_bars(bars_factory(tickers=("AAA", "BBB", "SPY"), start="2024-03-07", end="2024-03-08"))
    cut = bars["ts"].sort_values().iloc[len(bars) // 2]
    altered = bars.copy()
    future = altered["ts"] > cut
    rng = np.random.default_rng(1)
    scale = np.exp(rng.normal(0, 0.05, future.sum()))
    for col in ("open", "high", "low", "close"):
        altered.loc[future, col] *= scale
    altered.loc[future, "volume"] = rng.integers(0, 1_000_000, future.sum())
    names = spec.feature_names()
    a = compute_features(bars, spec).set_index(["ticker", "ts"])[names]
    b = compute_features(altered, spec).set_index(["ticker", "ts"])[names]
    past = a.index.get_level_values("ts") <= cut
    pd.testing.assert_frame_equal(a[past], b.loc[a.index[past]])
    # ... and the alteration is visible after the cut (the index's too), so the test can fail.
    for name in ("rv_5", "mkt_ret_15", "sec_rv_30"):
        assert not np.allclose(a[~past][name].fillna(0), b.loc[a.index[~past]][name].fillna(0)), name


def assert_features_close(expected: pd.DataFrame, actual: pd.DataFrame, rtol=1e-9, atol=1e-12, spec=SPEC):
    key = ["ticker", "interval", "ts"]
    e = expected.sort_values(key).reset_index(drop=True)
    a = actual.sort_values(key).reset_index(drop=True)
    assert len(e) == len(a), f"row counts differ: {len(e)} != {len(a)}"
    for col in ("ticker", "interval", "date", "volume", "label"):
        assert (e[col].to_numpy() == a[col].to_numpy()).all(), col
    assert (pd.to_datetime(e["ts"], utc=True) == pd.to_datetime(a["ts"], utc=True)).all()
    for col in spec.feature_names() + ["close", "fwd_ret"]:
        x, y = e[col].to_numpy(float), a[col].to_numpy(float)
        assert (np.isnan(x) == np.isnan(y)).all(), f"{col}: null patterns differ"
        ok = ~np.isnan(x)
        np.testing.assert_allclose(y[ok], x[ok], rtol=rtol, atol=atol, err_msg=col)


@pytest.mark.spark
def test_spark_features_equal_reference_across_tickers_gaps_and_missing_bars(spark, bars_factory):
    from hft.features import spark as spark_features

    spec = FeatureSpec(sectors=(("AAA", "CCC"), ("BBB", "XLF")))  # no XLF bars: BBB has no sector context
    bars = coerce_bars(bars_factory(tickers=("AAA", "BBB", "CCC", "SPY"), start="2024-03-07", end="2024-03-11"))
    later = coerce_bars(bars_factory(tickers=("AAA",), start="2024-03-20", end="2024-03-21", seed=5))
    bars = pd.concat([bars, later], ignore_index=True)  # AAA back after eight days: no overnight gap
    rng = np.random.default_rng(3)
    bars = bars[rng.random(len(bars)) > 0.03].reset_index(drop=True)  # missing bars
    five = coerce_bars(bars_factory(tickers=("AAA", "SPY"), start="2024-03-08", end="2024-03-08", interval="5m",
                                    seed=9))
    bars = pd.concat([bars, five], ignore_index=True)
    # a stretch of BBB that did not trade (one price, no volume): the 0.5 and 0.0 branches of both engines
    flat = bars.index[(bars["ticker"] == "BBB") & (bars["ts"].dt.date == pd.Timestamp("2024-03-08").date())][50:95]
    bars.loc[flat, ["open", "high", "low", "close"]] = bars.loc[flat[0], "close"]
    bars.loc[flat, "volume"] = 0
    expected = compute_features(bars, spec)
    sdf = spark.createDataFrame(bars, schema=bar_spark_schema())
    actual = spark_features.compute_features(sdf, spec).toPandas()
    actual["ts"] = pd.to_datetime(actual["ts"]).dt.tz_localize("UTC") if actual["ts"].dt.tz is None else actual["ts"]
    assert len(expected) > 3000
    assert_features_close(expected, actual, spec=spec)
    older = expected["mkt_ret_1"].ne(0) & expected["ticker"].ne("SPY")
    assert older.sum() > 3000 and expected["sec_ret_15"].ne(0).sum() > 1000  # the context was there to compare


@pytest.mark.spark
def test_spark_session_dates_and_time_of_day_do_not_depend_on_the_session_time_zone(spark, bars_factory):
    """New York dates and minutes come from the bar's instant alone, whatever spark.sql.session.timeZone is."""
    from hft.features import spark as spark_features

    bars = coerce_bars(bars_factory(tickers=("AAA",), start="2024-03-08", end="2024-03-11"))  # across DST
    sdf = spark.createDataFrame(bars, schema=bar_spark_schema())
    columns = ["ts", "date", "tod_minutes"]
    in_utc = spark_features.add_session_columns(sdf).select(*columns).toPandas()
    spark.conf.set("spark.sql.session.timeZone", "Asia/Tokyo")
    try:
        in_tokyo = spark_features.add_session_columns(sdf).select(*columns).toPandas()
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    expected = pd.Series(minutes_since_open(bars["ts"]), name="tod_minutes")
    pd.testing.assert_series_equal(in_utc["tod_minutes"], expected)
    pd.testing.assert_series_equal(in_tokyo["tod_minutes"], expected)
    assert list(in_tokyo["date"]) == list(in_utc["date"]) == list(session_date(bars["ts"]))


@pytest.mark.spark
def test_spark_feature_job_run_again_reuses_its_generated_code(spark, bars_factory, tmp_path):
    """The plan's ~120 generated classes fit Spark's codegen cache (spark.sql.codegen.cache.maxEntries in
    SPARK_LOCAL_CONF): with the default 100 the cache thrashed and every run compiled ~90 classes again, 2.4x the
    job's time on 1M bars. (Adaptive execution off: its runtime re-planning now and then picks a variant of a
    stage, whose few classes are new.)"""
    from hft.features import spark as spark_features

    bars = coerce_bars(bars_factory(tickers=("AAA", "SPY"), start="2024-03-07", end="2024-03-08"))
    spark.createDataFrame(bars, schema=bar_spark_schema()).write.parquet(str(tmp_path / "bars"))
    metrics = spark.sparkContext._jvm.org.apache.spark.metrics.source.CodegenMetrics

    def compiled_by_a_run() -> int:
        before = metrics.METRIC_COMPILATION_TIME().getCount()
        source = spark.read.schema(bar_spark_schema()).parquet(str(tmp_path / "bars"))
        spark_features.compute_features(source, FeatureSpec()).write.format("noop").mode("overwrite").save()
        return metrics.METRIC_COMPILATION_TIME().getCount() - before

    spark.conf.set("spark.sql.adaptive.enabled", "false")
    try:
        compiled_by_a_run()
        assert [compiled_by_a_run() for _ in range(3)] == [0, 0, 0]
    finally:
        spark.conf.unset("spark.sql.adaptive.enabled")
