"""A fake Yahoo for real yfinance 1.7 over a real requests.Session, no network.

A ``requests`` transport adapter mounted on ``https://`` answers every URL yfinance calls (the fc.yahoo.com
cookie, getcrumb, the consent page, the v8 chart API, quoteSummary) and records the requests it saw. Used by
the yfinance source's tests and by the files source's test of what ``yf.download(...).to_csv()`` writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import requests
from requests.adapters import BaseAdapter

NY = "America/New_York"
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
    # Yahoo sends whole volumes as integers and, since about February 2026, fractional 1m volumes as floats.
    quote["volume"] = [None if pd.isna(v) else int(v) if float(v).is_integer() else float(v) for v in frame["volume"]]
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
