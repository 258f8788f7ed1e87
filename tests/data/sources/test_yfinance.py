"""YFinanceSource against a fake Yahoo: real yfinance 1.7 and a real requests.Session, no network.

A ``requests`` transport adapter mounted on ``https://`` answers every URL yfinance calls (the fc.yahoo.com
cookie, getcrumb, the consent page, the v8 chart API, quoteSummary) and records the requests it saw.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
import requests
import yfinance
import yfinance.base
import yfinance.cache
import yfinance.data
from requests.adapters import BaseAdapter

from hft.data.sources.base import SourceError
from hft.data.sources.base import clean_bars
from hft.data.sources.yfinance import YFinanceSource, is_transient, split_windows
from hft.schemas import BAR_COLUMNS, Interval

NY = "America/New_York"
NOW = datetime(2024, 3, 20, 12, 0, tzinfo=timezone.utc)
NOT_FOUND = {
    "chart": {"result": None, "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"}}
}
SERVER_ERROR_JSON = {
    "chart": {"result": None, "error": {"code": "Internal Server Error", "description": "Internal Server Error"}}
}


def local_bars(day: str, times: list[str], price: float = 100.0, volume: int = 1000) -> pd.DataFrame:
    """Bars at New York wall-clock ``times`` on ``day``, indexed by UTC bar start."""
    index = pd.DatetimeIndex([pd.Timestamp(f"{day} {t}").tz_localize(NY) for t in times]).tz_convert("UTC")
    n = len(index)
    prices = price + np.arange(n, dtype=float)
    return pd.DataFrame(
        {"open": prices, "high": prices + 0.5, "low": prices - 0.5, "close": prices + 0.25, "volume": [volume] * n},
        index=index,
    )


def _period(day: pd.Timestamp, start: time, end: time) -> dict[str, Any]:
    lo = pd.Timestamp.combine(day, start).tz_localize(NY)
    hi = pd.Timestamp.combine(day, end).tz_localize(NY)
    return {
        "timezone": lo.tzname(),
        "start": int(lo.timestamp()),
        "end": int(hi.timestamp()),
        "gmtoffset": int(lo.utcoffset().total_seconds()),
    }


def trading_periods(frame: pd.DataFrame, prepost: bool, regular: tuple[time, time]) -> Any:
    """Yahoo's ``meta.tradingPeriods``: a list of regular sessions, or pre/regular/post when prepost was asked."""
    days = sorted({ts.tz_convert(NY).date() for ts in frame.index})
    regular_periods = [[_period(pd.Timestamp(d), *regular)] for d in days]
    if not prepost:
        return regular_periods
    return {
        "pre": [[_period(pd.Timestamp(d), time(4, 0), time(9, 30))] for d in days],
        "regular": regular_periods,
        "post": [[_period(pd.Timestamp(d), time(16, 0), time(20, 0))] for d in days],
    }


def chart_json(
    symbol: str, frame: pd.DataFrame, granularity: str, prepost: bool, regular: tuple[time, time]
) -> dict[str, Any]:
    """Yahoo's v8 chart answer for ``frame`` (NaN becomes null; an empty frame gives Yahoo's empty quote)."""
    meta: dict[str, Any] = {
        "currency": "USD",
        "symbol": symbol,
        "exchangeName": "PCX",
        "fullExchangeName": "NYSEArca",
        "instrumentType": "ETF",
        "firstTradeDate": 728317800,
        "regularMarketTime": 1710878400,
        "hasPrePostMarketData": True,
        "gmtoffset": -14400,
        "timezone": "EDT",
        "exchangeTimezoneName": NY,
        "regularMarketPrice": 100.0,
        "priceHint": 2,
        "dataGranularity": granularity,
        "range": "",
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }
    if frame.empty:
        return {"chart": {"result": [{"meta": meta, "indicators": {"quote": [{}]}}], "error": None}}
    if granularity != "1d":
        meta["tradingPeriods"] = trading_periods(frame, prepost, regular)

    def values(col: str, cast: type) -> list[Any]:
        return [None if pd.isna(v) else cast(v) for v in frame[col]]

    quote = {c: values(c, float) for c in ("open", "high", "low", "close")}
    quote["volume"] = values("volume", int)
    result = {"meta": meta, "timestamp": [int(ts.timestamp()) for ts in frame.index], "indicators": {"quote": [quote]}}
    return {"chart": {"result": [result], "error": None}}


@dataclass
class FakeYahoo(BaseAdapter):
    """Answers yfinance's HTTPS requests by URL and records them."""

    bars: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: (status, body) answers handed out, in order, to chart history requests before serving ``bars``.
    history_failures: list[tuple[int, Any]] = field(default_factory=list)
    #: Yahoo's meta.tradingPeriods regular hours (local); widen it to see what the source itself filters.
    regular_hours: tuple[time, time] = (time(9, 30), time(16, 0))
    #: Every URL seen.
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    @property
    def history_requests(self) -> list[dict[str, str]]:
        """Query parameters of chart requests asking for a date range (not yfinance's timezone probe)."""
        out = []
        for url in self.seen:
            parts = urlsplit(url)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if "/v8/finance/chart/" in parts.path and "period1" in query:
                out.append({"symbol": parts.path.rsplit("/", 1)[-1], **query})
        return out

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.seen.append(request.url)
        status, body = self._answer(urlsplit(request.url))
        response = requests.Response()
        response.status_code = status
        response.url = request.url
        response.request = request
        response.encoding = "utf-8"
        if isinstance(body, str):
            response._content = body.encode()
            response.headers["Content-Type"] = "text/html"
        else:
            response._content = json.dumps(body).encode()
            response.headers["Content-Type"] = "application/json"
        return response

    def close(self) -> None:
        pass

    def _answer(self, url: Any) -> tuple[int, Any]:
        if url.hostname == "fc.yahoo.com":
            return 404, "<html>cookie</html>"
        if url.path.endswith("/v1/test/getcrumb"):
            return 200, "test-crumb"
        if url.hostname == "guce.yahoo.com":
            return 200, "<html><body>consent</body></html>"
        if "/v8/finance/chart/" not in url.path:
            return 404, {"finance": {"result": None, "error": {"code": "Not Found", "description": "not faked"}}}
        symbol = url.path.rsplit("/", 1)[-1]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if symbol not in self.bars:
            return 404, NOT_FOUND
        frame = self.bars[symbol]
        if "period1" not in query:  # yfinance's timezone probe: range=1d
            return 200, chart_json(symbol, frame.iloc[:0], "1d", False, self.regular_hours)
        if self.history_failures:
            return self.history_failures.pop(0)
        lo = pd.Timestamp(int(query["period1"]), unit="s", tz="UTC")
        hi = pd.Timestamp(int(query["period2"]), unit="s", tz="UTC")
        window = frame[(frame.index >= lo) & (frame.index < hi)]
        prepost = query.get("includePrePost") == "True"
        return 200, chart_json(symbol, window, query["interval"], prepost, self.regular_hours)


@pytest.fixture(autouse=True)
def hermetic_yfinance(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No disk caches, a fresh YfData singleton and response cache, deterministic tz-probe fallback."""
    monkeypatch.setattr(yfinance.cache._TzCacheManager, "_tz_cache", yfinance.cache._TzCacheDummy())
    monkeypatch.setattr(yfinance.cache._CookieCacheManager, "_Cookie_cache", yfinance.cache._CookieCacheDummy())
    monkeypatch.setattr(yfinance.base, "_tz_info_fetch_ctr", 0)
    yfinance.data.SingletonMeta._instances.pop(yfinance.data.YfData, None)
    yfinance.data.YfData.cache_get.cache_clear()
    yield
    yfinance.data.SingletonMeta._instances.pop(yfinance.data.YfData, None)
    yfinance.data.YfData.cache_get.cache_clear()


@pytest.fixture
def yahoo() -> FakeYahoo:
    return FakeYahoo()


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
    assert bars["volume"].dtype == np.int64


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
