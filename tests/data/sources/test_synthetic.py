"""Tests of the synthetic bar source."""

from __future__ import annotations

import time
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from hft.data import calendar as cal
from hft.data.sources.base import SourceError
from hft.data.sources.synthetic import SyntheticConfig, SyntheticSource
from hft.schemas import BAR_COLUMNS, Interval

HIGH_PRICES = (200.0, 400.0)  # keeps cent rounding negligible in statistical tests
TICKERS = ["AAA", "BBB", "CCC", "DDD"]


@pytest.fixture(scope="module")
def minute_bars() -> pd.DataFrame:
    """About 64k 1m bars: four tickers over the 41 trading days of Jan-Feb 2024."""
    source = SyntheticSource(SyntheticConfig(start_price_range=HIGH_PRICES))
    return source.fetch(TICKERS, datetime(2024, 1, 2), datetime(2024, 3, 1), Interval.M1)


def _bar_returns(bars: pd.DataFrame) -> pd.Series:
    """Intraday log return of each bar (close over open, no overnight gap)."""
    return np.log(bars["close"] / bars["open"])


def _fit_logistic(x: np.ndarray, y: np.ndarray, iterations: int = 25) -> np.ndarray:
    """Intercept and slope of a one-feature logistic regression (Newton's method)."""
    design = np.column_stack([np.ones_like(x), x])
    weights = np.zeros(2)
    for _ in range(iterations):
        prob = 1.0 / (1.0 + np.exp(-design @ weights))
        hessian = (design * (prob * (1.0 - prob))[:, None]).T @ design
        weights += np.linalg.solve(hessian, design.T @ (y - prob))
    return weights


def _direction_accuracy(predictability: float) -> float:
    """Out-of-sample accuracy of a logistic regression of next-5-bar direction on the past-5-bar return."""
    config = SyntheticConfig(predictability=predictability, start_price_range=HIGH_PRICES)
    bars = SyntheticSource(config).fetch(["AAA"], datetime(2024, 1, 2), datetime(2024, 7, 12), "1m")
    assert len(bars) > 50_000
    log_close = np.log(bars["close"].to_numpy())
    past = log_close[5:-5] - log_close[:-10]
    future = log_close[10:] - log_close[5:-5]
    moved = future != 0
    feature, label = past[moved] / past[moved].std(), (future[moved] > 0).astype(float)
    half = len(feature) // 2
    weights = _fit_logistic(feature[:half], label[:half])
    predicted = (weights[0] + weights[1] * feature[half:]) > 0
    return float(np.mean(predicted == (label[half:] == 1.0)))


def test_fetch_same_request_twice_identical_frames() -> None:
    first = SyntheticSource().fetch(["AAA", "BBB"], datetime(2024, 5, 1), datetime(2024, 5, 8), "5m")
    second = SyntheticSource().fetch(["AAA", "BBB"], datetime(2024, 5, 1), datetime(2024, 5, 8), "5m")
    pd.testing.assert_frame_equal(first, second)


def test_fetch_other_seed_different_prices() -> None:
    first = SyntheticSource(SyntheticConfig(seed=1)).fetch(["AAA"], datetime(2024, 5, 1), datetime(2024, 5, 2), "1m")
    second = SyntheticSource(SyntheticConfig(seed=2)).fetch(["AAA"], datetime(2024, 5, 1), datetime(2024, 5, 2), "1m")
    assert not np.array_equal(first["close"].to_numpy(), second["close"].to_numpy())


def test_fetch_ticker_alone_or_with_others_same_path() -> None:
    alone = SyntheticSource().fetch(["BBB"], datetime(2024, 5, 1), datetime(2024, 5, 8), "1m")
    together = SyntheticSource().fetch(["CCC", "BBB", "AAA"], datetime(2024, 5, 1), datetime(2024, 5, 8), "1m")
    pd.testing.assert_frame_equal(together[together["ticker"] == "BBB"].reset_index(drop=True), alone)


def test_fetch_layout_canonical_and_sorted(minute_bars: pd.DataFrame) -> None:
    assert tuple(minute_bars.columns) == BAR_COLUMNS
    assert str(minute_bars["ts"].dtype) == "datetime64[us, UTC]"
    assert minute_bars["volume"].dtype == np.float64
    assert set(minute_bars["interval"]) == {"1m"}
    assert sorted(minute_bars["ticker"].unique()) == TICKERS
    keys = minute_bars[["ticker", "ts"]]
    assert not keys.duplicated().any()
    assert keys.equals(keys.sort_values(["ticker", "ts"]).reset_index(drop=True))


def test_fetch_ohlc_consistent_positive_cents(minute_bars: pd.DataFrame) -> None:
    bars = minute_bars
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars[["open", "high", "low", "close"]] > 0).all().all()
    cents = bars[["open", "high", "low", "close"]].to_numpy() * 100
    np.testing.assert_allclose(cents, np.round(cents), atol=1e-6)
    assert (bars["volume"] > 0).all()
    assert (bars["high"] > bars["low"]).mean() > 0.9


def test_fetch_low_prices_stay_positive_cents() -> None:
    config = SyntheticConfig(start_price_range=(0.05, 0.05), annual_vol=1.0)
    bars = SyntheticSource(config).fetch(["PENNY"], datetime(2024, 5, 1), datetime(2024, 6, 1), "1m")
    assert (bars[["open", "high", "low", "close"]] >= 0.01).all().all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()


def test_fetch_intraday_open_equals_previous_close_and_sessions_gap(minute_bars: pd.DataFrame) -> None:
    bars = minute_bars[minute_bars["ticker"] == "AAA"]
    day = cal.session_date(bars["ts"])
    same_session = day[1:] == day[:-1]
    opens, closes = bars["open"].to_numpy()[1:], bars["close"].to_numpy()[:-1]
    assert np.array_equal(opens[same_session], closes[same_session])
    assert (opens[~same_session] != closes[~same_session]).mean() > 0.8


def test_fetch_bars_only_in_regular_sessions_of_trading_days() -> None:
    bars = SyntheticSource().fetch(["AAA"], datetime(2024, 11, 25), datetime(2024, 12, 3), "1m")
    assert cal.in_session(bars["ts"]).all()
    per_day = pd.Series(cal.session_date(bars["ts"])).value_counts().sort_index()
    assert list(per_day.index) == cal.trading_days(date(2024, 11, 25), date(2024, 12, 2))
    assert date(2024, 11, 28) not in per_day.index  # Thanksgiving
    assert per_day[date(2024, 11, 29)] == 210  # early close
    assert per_day[date(2024, 11, 26)] == 390


def test_fetch_five_minute_bars_78_per_regular_session() -> None:
    bars = SyntheticSource().fetch(["AAA"], datetime(2024, 3, 8), datetime(2024, 3, 12), "5m")
    assert len(bars) == 2 * 78
    assert bars["ts"].iloc[0] == pd.Timestamp("2024-03-08 14:30", tz="UTC")
    assert bars["ts"].iloc[78] == pd.Timestamp("2024-03-11 13:30", tz="UTC")  # after the DST switch
    assert (bars["ts"].diff().iloc[1:78] == pd.Timedelta(minutes=5)).all()


def test_fetch_daily_bars_one_per_day_at_session_open() -> None:
    bars = SyntheticSource().fetch(["AAA", "BBB"], datetime(2024, 11, 25), datetime(2024, 12, 3), "1d")
    days = cal.trading_days(date(2024, 11, 25), date(2024, 12, 2))
    expected = [cal.session_bounds(d)[0] for d in days]
    for _, group in bars.groupby("ticker"):
        assert list(group["ts"]) == expected
    assert set(bars["interval"]) == {"1d"}
    assert (bars["volume"] > 1_000_000).all()


def test_fetch_partial_window_keeps_start_inclusive_end_exclusive() -> None:
    start, end = datetime(2024, 5, 1, 15, 0), datetime(2024, 5, 1, 16, 0)
    bars = SyntheticSource().fetch(["AAA"], start, end, "1m")
    assert len(bars) == 60
    assert bars["ts"].min() == pd.Timestamp(start, tz="UTC")
    assert bars["ts"].max() == pd.Timestamp("2024-05-01 15:59", tz="UTC")


def test_fetch_intraday_u_shape_in_volatility_and_volume(minute_bars: pd.DataFrame) -> None:
    minute = cal.minutes_since_open(minute_bars["ts"])
    size = _bar_returns(minute_bars).abs()
    volume = minute_bars["volume"]
    first, last, midday = minute < 30, minute >= 360, (minute >= 150) & (minute < 240)
    assert size[first].mean() > 1.5 * size[midday].mean()
    assert size[last].mean() > 1.5 * size[midday].mean()
    assert volume[first].mean() > 1.5 * volume[midday].mean()
    assert volume[last].mean() > 1.5 * volume[midday].mean()


def test_fetch_minute_returns_fat_tailed(minute_bars: pd.DataFrame) -> None:
    returns = _bar_returns(minute_bars[minute_bars["ticker"] == "AAA"]).to_numpy()
    centred = returns - returns.mean()
    kurtosis = np.mean(centred**4) / np.mean(centred**2) ** 2
    assert kurtosis > 6.0  # excess kurtosis above 3


def test_fetch_cross_ticker_correlation_near_target(minute_bars: pd.DataFrame) -> None:
    wide = minute_bars.assign(r=_bar_returns(minute_bars)).pivot(index="ts", columns="ticker", values="r")
    corr = wide.corr(method="spearman").to_numpy()[np.triu_indices(len(TICKERS), 1)]
    assert 0.35 < corr.mean() < 0.6


def test_fetch_zero_market_corr_uncorrelated_tickers() -> None:
    config = SyntheticConfig(market_beta_corr=0.0, start_price_range=HIGH_PRICES)
    bars = SyntheticSource(config).fetch(["AAA", "BBB"], datetime(2024, 1, 2), datetime(2024, 2, 1), "1m")
    wide = bars.assign(r=_bar_returns(bars)).pivot(index="ts", columns="ticker", values="r")
    assert abs(wide.corr(method="spearman").iloc[0, 1]) < 0.05


def _abs_return_autocorr(bars: pd.DataFrame) -> float:
    """Mean lag-1 autocorrelation of |bar return| after removing the intraday U-shape."""
    size = _bar_returns(bars).abs()
    deseasoned = size / size.groupby(cal.minutes_since_open(bars["ts"])).transform("mean")
    return float(deseasoned.groupby(bars["ticker"]).apply(lambda s: s.autocorr(1)).mean())


def test_fetch_garch_abs_returns_autocorrelated(minute_bars: pd.DataFrame) -> None:
    flat = SyntheticConfig(garch_alpha=0.0, garch_beta=0.0, start_price_range=HIGH_PRICES)
    no_garch = SyntheticSource(flat).fetch(TICKERS, datetime(2024, 1, 2), datetime(2024, 3, 1), "1m")
    clustered = _abs_return_autocorr(minute_bars)
    assert clustered > 0.05
    assert clustered > _abs_return_autocorr(no_garch) + 0.04


def test_fetch_volume_rises_with_abs_return(minute_bars: pd.DataFrame) -> None:
    size = _bar_returns(minute_bars).abs()
    assert minute_bars["volume"].corr(size, method="spearman") > 0.3


def test_fetch_default_predictability_learnable_by_logistic_regression() -> None:
    assert _direction_accuracy(0.15) > 0.53


def test_fetch_zero_predictability_accuracy_near_coin_flip() -> None:
    assert abs(_direction_accuracy(0.0) - 0.5) < 0.015


def test_fetch_million_minute_bars_under_15_seconds() -> None:
    started = time.perf_counter()
    bars = SyntheticSource().fetch(["AAA", "BBB", "CCC", "DDD"], datetime(2022, 1, 1), datetime(2024, 7, 1), "1m")
    elapsed = time.perf_counter() - started
    assert len(bars) > 950_000
    assert elapsed < 15.0


@pytest.mark.parametrize(
    ("tickers", "start", "end", "interval", "message"),
    [
        ([], datetime(2024, 5, 1), datetime(2024, 5, 2), "1m", "no tickers"),
        (["AAA"], datetime(2024, 5, 2), datetime(2024, 5, 1), "1m", "must be before"),
        (["AAA"], datetime(2024, 5, 1), datetime(2024, 5, 1), "1m", "must be before"),
        (["AAA"], datetime(2024, 3, 29), datetime(2024, 3, 30), "1m", "no NYSE trading session"),
        (["AAA"], datetime(2024, 5, 4), datetime(2024, 5, 6), "1m", "no NYSE trading session"),
        (["AAA"], datetime(2024, 5, 1, 22), datetime(2024, 5, 2, 4), "1m", "no NYSE trading session"),
        (["aapl"], datetime(2024, 5, 1), datetime(2024, 5, 2), "1m", "invalid ticker"),
        (["AAA", "TOO-LONG-TICKER"], datetime(2024, 5, 1), datetime(2024, 5, 2), "1m", "invalid ticker"),
        (["1AB"], datetime(2024, 5, 1), datetime(2024, 5, 2), "1m", "invalid ticker"),
        (["AAA\n"], datetime(2024, 5, 1), datetime(2024, 5, 2), "1m", "invalid ticker"),
        (["AAA"], datetime(2024, 5, 1), datetime(2024, 5, 2), "2h", "unknown interval"),
    ],
)
def test_fetch_bad_request_raises_source_error(
    tickers: list[str], start: datetime, end: datetime, interval: str, message: str
) -> None:
    with pytest.raises(SourceError, match=message) as caught:
        SyntheticSource().fetch(tickers, start, end, interval)
    assert "\n" not in str(caught.value)


def test_fetch_dotted_and_dashed_tickers_accepted() -> None:
    bars = SyntheticSource().fetch(["BRK.B", "BF-B"], datetime(2024, 5, 1), datetime(2024, 5, 2), "1d")
    assert sorted(bars["ticker"]) == ["BF-B", "BRK.B"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"predictability": 1.5},
        {"predictability": -0.1},
        {"garch_alpha": 0.2, "garch_beta": 0.85},
        {"t_dof": 2.0},
        {"market_beta_corr": 1.0},
        {"start_price_range": (10.0, 5.0)},
        {"predictability_after": -0.5},
        {"predictability_after": 1.1},
    ],
)
def test_config_invalid_values_raise_value_error(overrides: dict) -> None:
    with pytest.raises(ValueError, match="invalid SyntheticConfig"):
        SyntheticConfig(**overrides)


def test_source_name_is_synthetic() -> None:
    assert SyntheticSource.name == "synthetic"


def test_fetch_simulated_in_ticker_groups_same_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = SyntheticSource().fetch(TICKERS, datetime(2024, 5, 1), datetime(2024, 5, 3), "1m")
    monkeypatch.setattr("hft.data.sources.synthetic._MAX_CELLS_PER_CHUNK", 1)
    grouped = SyntheticSource().fetch(TICKERS, datetime(2024, 5, 1), datetime(2024, 5, 3), "1m")
    pd.testing.assert_frame_equal(grouped, whole)


def test_fetch_tz_aware_bounds_converted_to_utc() -> None:
    start = pd.Timestamp("2024-05-01 10:00", tz=cal.EXCHANGE_TZ).to_pydatetime()
    end = pd.Timestamp("2024-05-01 10:30", tz=cal.EXCHANGE_TZ).to_pydatetime()
    bars = SyntheticSource().fetch(["AAA"], start, end, "1m")
    assert len(bars) == 30
    assert bars["ts"].iloc[0] == pd.Timestamp("2024-05-01 14:00", tz="UTC")


def _lag_slope(bars: pd.DataFrame) -> float:
    """Slope of the next 5-bar log return on the past 5-bar one (negative: mean reversion)."""
    log_close = np.log(bars["close"].to_numpy())
    past, future = log_close[5:-5] - log_close[:-10], log_close[10:] - log_close[5:-5]
    return float(np.polyfit(past, future, 1)[0])


def test_regime_change_turns_mean_reversion_into_trend_following_from_its_session_on() -> None:
    start, end = datetime(2024, 1, 2), datetime(2024, 5, 1)
    one = SyntheticConfig(predictability=0.3, start_price_range=HIGH_PRICES)
    two = SyntheticConfig(predictability=0.3, start_price_range=HIGH_PRICES, regime_change="2024-03-01",
                          predictability_after=-0.3)
    a, b = (SyntheticSource(c).fetch(["AAA"], start, end, "1m") for c in (one, two))
    change = b["ts"] >= pd.Timestamp("2024-03-01 14:30", tz="UTC")
    pd.testing.assert_frame_equal(a[~change.to_numpy()], b[~change.to_numpy()])  # same market up to the change
    assert not np.allclose(a.loc[change, "close"], b.loc[change, "close"])
    assert _lag_slope(b[~change]) < -0.05 and _lag_slope(b[change]) > 0.05 and _lag_slope(a[change]) < -0.05
