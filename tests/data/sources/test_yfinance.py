"""YFinanceSource against a fake Yahoo: real yfinance 1.7 and a real requests.Session, no network.

A ``requests`` transport adapter mounted on ``https://`` answers every URL yfinance calls (the fc.yahoo.com
cookie, getcrumb, the consent page, the v8 chart API, quoteSummary) and records the requests it saw.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from fake_yahoo import NOT_FOUND, NY, SERVER_ERROR_JSON, FakeYahoo, local_bars
from hft.data.sources.base import SourceError, clean_bars
from hft.data.sources.yfinance import YFinanceSource, is_transient, split_windows
from hft.schemas import BAR_COLUMNS, Interval

NOW = datetime(2024, 3, 20, 12, 0, tzinfo=timezone.utc)


@dataclass
class Sleeps:
    calls: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_source(yahoo: FakeYahoo, sleeps: Sleeps, **options: Any) -> YFinanceSource:
    session = requests.Session()
    session.mount("https://", yahoo)
    return YFinanceSource(session=session, sleep=sleeps, now=lambda: NOW, **options)


def utc(text: str) -> datetime:
    return pd.Timestamp(text, tz="UTC").to_pydatetime()


def test_fetch_1m_over_ten_days_requests_two_windows(yahoo: FakeYahoo, sleeps: Sleeps) -> None:
    yahoo.bars["SPY"] = pd.concat(
        [local_bars("2024-03-05", ["09:30", "09:31"]), local_bars("2024-03-12", ["10:00", "10:01"], price=200)]
    )
    bars = make_source(yahoo, sleeps).fetch(["SPY"], utc("2024-03-04"), utc("2024-03-14"), Interval.M1)

    windows = [(int(r["period1"]), int(r["period2"])) for r in yahoo.history_requests]
    edges = [int(pd.Timestamp(d, tz="UTC").timestamp()) for d in ("2024-03-04", "2024-03-11", "2024-03-14")]
    assert windows == [(edges[0], edges[1]), (edges[1], edges[2])]
    assert {r["interval"] for r in yahoo.history_requests} == {"1m"}
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert len(bars) == 4
    assert (bars["interval"] == "1m").all()
    assert bars["volume"].dtype == np.float64


def test_fetch_across_dst_change_returns_utc_bar_starts(yahoo: FakeYahoo, sleeps: Sleeps) -> None:
    # 2024-03-10: New York moves from EST (UTC-5) to EDT (UTC-4).
    yahoo.bars["SPY"] = pd.concat([local_bars("2024-03-08", ["09:30"]), local_bars("2024-03-11", ["09:30"])])
    bars = make_source(yahoo, sleeps).fetch(["spy"], utc("2024-03-08"), utc("2024-03-12"), "1m")

    assert str(bars["ts"].dt.tz) == "UTC"
    assert bars["ts"].tolist() == [
        pd.Timestamp("2024-03-08 14:30", tz="UTC"),  # 09:30 EST
        pd.Timestamp("2024-03-11 13:30", tz="UTC"),  # 09:30 EDT
    ]
    assert bars["ticker"].tolist() == ["SPY", "SPY"]


def test_fetch_duplicate_timestamps_from_yahoo_yields_one_bar(yahoo: FakeYahoo, sleeps: Sleeps) -> None:
    first = local_bars("2024-03-12", ["09:30", "09:31"], price=100)
    again = local_bars("2024-03-12", ["09:31"], price=500)
    yahoo.bars["SPY"] = pd.concat([first, again])
    bars = make_source(yahoo, sleeps).fetch(["SPY"], utc("2024-03-12"), utc("2024-03-13"), "1m")

    assert bars["ts"].is_unique
    assert len(bars) == 2
    # yfinance itself drops repeated timestamps of one answer, keeping the first.
    assert bars["open"].tolist() == [100.0, 101.0]


def test_clean_bars_duplicates_keep_last_and_sort(sleeps: Sleeps) -> None:
    ts = pd.to_datetime(["2024-03-12 13:31", "2024-03-12 13:30", "2024-03-12 13:31"], utc=True)
    raw = pd.DataFrame(
        {"ticker": "SPY", "ts": ts, "interval": "1m", "open": [1.0, 2.0, 3.0], "high": 4.0, "low": 0.5,
         "close": 1.0, "volume": [10, 20, 30]}
    )
    bars, dropped = clean_bars(raw, pd.Timestamp("2024-03-12", tz="UTC"), pd.Timestamp("2024-03-13", tz="UTC"),
                               Interval.M1, regular_session_only=True)

    assert dropped.duplicates == 1
    assert bars["open"].tolist() == [2.0, 3.0]
    assert bars["ts"].is_monotonic_increasing


def test_fetch_regular_session_only_drops_pre_and_post_market(
    yahoo: FakeYahoo, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    # Yahoo's meta claims 04:00-20:00, so yfinance keeps everything and the NYSE calendar must do the work.
    yahoo.regular_hours = (time(4, 0), time(20, 0))
    yahoo.bars["SPY"] = local_bars("2024-03-12", ["08:00", "09:29", "09:30", "15:59", "16:00", "19:00"])
    with caplog.at_level(logging.INFO, logger="hft.data.sources.yfinance"):
        bars = make_source(yahoo, sleeps).fetch(["SPY"], utc("2024-03-12"), utc("2024-03-13"), "1m")

    local = bars["ts"].dt.tz_convert(NY).dt.strftime("%H:%M").tolist()
    assert local == ["09:30", "15:59"]
    assert {r["includePrePost"] for r in yahoo.history_requests} == {"False"}
    assert "4 outside the regular session" in caplog.text


def test_fetch_with_extended_hours_keeps_pre_and_post_market(yahoo: FakeYahoo, sleeps: Sleeps) -> None:
    yahoo.bars["SPY"] = local_bars("2024-03-12", ["08:00", "09:30", "16:00"])
    source = make_source(yahoo, sleeps, regular_session_only=False)
    bars = source.fetch(["SPY"], utc("2024-03-12"), utc("2024-03-13"), "1m")

    assert bars["ts"].dt.tz_convert(NY).dt.strftime("%H:%M").tolist() == ["08:00", "09:30", "16:00"]
    assert {r["includePrePost"] for r in yahoo.history_requests} == {"True"}


def test_fetch_null_rows_from_yahoo_are_dropped_partial_nulls_kept(yahoo: FakeYahoo, sleeps: Sleeps) -> None:
    frame = local_bars("2024-03-12", ["09:30", "09:31", "09:32"]).astype({"volume": float})
    frame.iloc[1] = np.nan  # Yahoo's all-null row: open/high/low/close/volume all null
    frame.iloc[2, frame.columns.get_loc("open")] = np.nan  # only the open missing
    yahoo.bars["SPY"] = frame
    bars = make_source(yahoo, sleeps).fetch(["SPY"], utc("2024-03-12"), utc("2024-03-13"), "1m")

    assert bars["ts"].dt.tz_convert(NY).dt.strftime("%H:%M").tolist() == ["09:30", "09:32"]
    assert np.isnan(bars["open"].iloc[1])  # left for validation to judge
    assert bars["close"].iloc[1] == 102.25


def test_fetch_unknown_ticker_raises_source_error_naming_it(yahoo: FakeYahoo, sleeps: Sleeps) -> None:
    with pytest.raises(SourceError, match=r"NOSUCH.*2024-03-12") as err:
        make_source(yahoo, sleeps).fetch(["NOSUCH"], utc("2024-03-12"), utc("2024-03-13"), "1m")

    assert "\n" not in str(err.value)
    assert sleeps.calls == []


def test_fetch_yahoo_refusal_in_history_is_not_retried(yahoo: FakeYahoo, sleeps: Sleeps) -> None:
    yahoo.bars["SPY"] = local_bars("2024-03-12", ["09:30"])
    yahoo.history_failures = [(404, NOT_FOUND)] * 10
    with pytest.raises(SourceError, match="SPY.*symbol may be delisted"):
        make_source(yahoo, sleeps).fetch(["SPY"], utc("2024-03-12"), utc("2024-03-13"), "1m")

    assert sleeps.calls == []


def test_fetch_empty_answer_raises_source_error(yahoo: FakeYahoo, sleeps: Sleeps) -> None:
    yahoo.bars["SPY"] = local_bars("2024-03-12", ["09:30"])
    with pytest.raises(SourceError, match=r"no 1m bars for SPY in \[2024-03-13"):
        make_source(yahoo, sleeps).fetch(["SPY"], utc("2024-03-13"), utc("2024-03-14"), "1m")


def test_fetch_server_error_then_success_retries_with_backoff(yahoo: FakeYahoo, sleeps: Sleeps) -> None:
    yahoo.bars["SPY"] = local_bars("2024-03-12", ["09:30", "09:31"])
    # yfinance re-sends a failed request once itself (after switching cookie strategy): two 500s fail one attempt.
    yahoo.history_failures = [(500, "<html>Internal Server Error</html>")] * 2
    bars = make_source(yahoo, sleeps, backoff_s=0.5).fetch(["SPY"], utc("2024-03-12"), utc("2024-03-13"), "1m")

    assert len(bars) == 2
    assert sleeps.calls == [0.5]
    assert len(yahoo.history_requests) == 3


def test_fetch_persistent_server_error_raises_after_max_retries(yahoo: FakeYahoo, sleeps: Sleeps) -> None:
    yahoo.bars["SPY"] = local_bars("2024-03-12", ["09:30"])
    yahoo.history_failures = [(500, SERVER_ERROR_JSON)] * 100
    with pytest.raises(SourceError, match="gave up.*SPY.*after 4 attempt"):
        make_source(yahoo, sleeps, max_retries=3).fetch(["SPY"], utc("2024-03-12"), utc("2024-03-13"), "1m")

    assert sleeps.calls == [1.0, 2.0, 4.0]
    assert len(yahoo.history_requests) == 8  # 4 attempts, each sent twice by yfinance


def test_fetch_rate_limited_is_retried(yahoo: FakeYahoo, sleeps: Sleeps) -> None:
    yahoo.bars["SPY"] = local_bars("2024-03-12", ["09:30"])
    yahoo.history_failures = [(429, "Too Many Requests")] * 2
    bars = make_source(yahoo, sleeps).fetch(["SPY"], utc("2024-03-12"), utc("2024-03-13"), "1m")

    assert len(bars) == 1
    assert sleeps.calls == [1.0]


def test_fetch_1m_start_older_than_30_days_raises_without_requests(yahoo: FakeYahoo, sleeps: Sleeps) -> None:
    with pytest.raises(SourceError, match="1m bars only for the last 30 days"):
        make_source(yahoo, sleeps).fetch(["SPY"], NOW - timedelta(days=31), NOW - timedelta(days=29), "1m")

    assert yahoo.seen == []


def test_fetch_5m_start_older_than_60_days_raises(yahoo: FakeYahoo, sleeps: Sleeps) -> None:
    with pytest.raises(SourceError, match="5m bars only for the last 60 days"):
        make_source(yahoo, sleeps).fetch(["SPY"], NOW - timedelta(days=61), NOW, "5m")


def test_fetch_daily_asks_one_window_and_keeps_local_midnight(yahoo: FakeYahoo, sleeps: Sleeps) -> None:
    days = pd.DatetimeIndex([pd.Timestamp(d).tz_localize(NY) for d in ("2020-01-02", "2020-01-03")]).tz_convert("UTC")
    yahoo.bars["SPY"] = pd.DataFrame(
        {"open": [1.0, 2.0], "high": [1.5, 2.5], "low": [0.5, 1.5], "close": [1.2, 2.2], "volume": [10, 20]}, index=days
    )
    bars = make_source(yahoo, sleeps).fetch(["SPY"], utc("2020-01-01"), utc("2024-03-01"), "1d")

    assert len(yahoo.history_requests) == 1
    assert bars["ts"].tolist() == [pd.Timestamp(f"2020-01-0{d} 05:00", tz="UTC") for d in (2, 3)]
    assert (bars["interval"] == "1d").all()


def test_split_windows_5m_span_caps_each_window() -> None:
    lo, hi = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-03-15", tz="UTC")
    windows = split_windows(lo, hi, timedelta(days=60))

    assert windows == [(lo, lo + timedelta(days=60)), (lo + timedelta(days=60), hi)]


def test_is_transient_classifies_network_and_http_errors() -> None:
    def http_error(status: int) -> requests.HTTPError:
        response = requests.Response()
        response.status_code = status
        return requests.HTTPError(response=response)

    assert is_transient(requests.ConnectionError("reset"))
    assert is_transient(requests.Timeout("slow"))
    assert is_transient(http_error(503))
    assert is_transient(http_error(429))
    assert not is_transient(http_error(404))
    assert not is_transient(KeyError("tradingPeriods"))
