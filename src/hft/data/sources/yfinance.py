"""Bars from Yahoo Finance, through the ``yfinance`` package (1.7).

Yahoo's chart API limits what one request may ask for: 1-minute bars cover at most 7 days per request and
only the last 30 days; 5-minute bars at most 60 days, and only the last 60 days; daily bars have no limit.
:class:`YFinanceSource` splits a request into windows that fit, retries transient failures with exponential
backoff, and turns what comes back into canonical bars (:func:`hft.schemas.coerce_bars`).

How yfinance 1.7 reports trouble, and what this module makes of it:

* By default yfinance logs errors and returns an empty frame. While fetching, this module switches
  ``yf.config.debug.hide_exceptions`` off (and restores it after), so failures arrive as exceptions.
* HTTP 429 becomes ``YFRateLimitError``; connection errors and timeouts arrive as the session's own
  exceptions (``requests`` or ``curl_cffi``); a 5xx page that is not JSON arrives as a JSON decode error.
  These are transient and retried.
* Yahoo's explicit refusals (unknown or delisted ticker: ``YFTzMissingError``, an HTTP 404 error, or
  ``YFPricesMissingError`` carrying Yahoo's reason) are permanent and become a :class:`SourceError` at once.
* A window Yahoo answers without bars (``YFPricesMissingError`` with no reason) is simply empty; a ticker
  whose every window is empty is a :class:`SourceError`.
* yfinance memoises GET responses of past date ranges in an in-process LRU cache, failed ones included;
  the cache is cleared before each retry so that a retry really asks Yahoo again.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import pandas as pd
import yfinance as yf
from yfinance.exceptions import YFDataException, YFPricesMissingError, YFRateLimitError

from hft.data.sources.base import BarSource, SourceError, clean_bars
from hft.schemas import Interval, SchemaError, empty_bars

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class YahooLimits:
    """What Yahoo serves for one interval."""

    #: Longest span one request may cover (None: unlimited).
    max_span: timedelta | None
    #: How far back from now Yahoo serves the interval (None: unlimited).
    lookback: timedelta | None


LIMITS: dict[Interval, YahooLimits] = {
    Interval.M1: YahooLimits(max_span=timedelta(days=7), lookback=timedelta(days=30)),
    Interval.M5: YahooLimits(max_span=timedelta(days=60), lookback=timedelta(days=60)),
    Interval.D1: YahooLimits(max_span=None, lookback=None),
}

#: Exception class names (anywhere in the MRO) that mean "the network failed, try again".
#: Names rather than classes, because the session may be ``requests`` or ``curl_cffi``.
_TRANSIENT_NAMES = frozenset(
    {
        "ConnectionError",
        "Timeout",
        "TimeoutError",
        "ConnectTimeout",
        "ReadTimeout",
        "ChunkedEncodingError",
        "RemoteDisconnected",
        "ProxyError",
    }
)
#: Yahoo reasons (inside a JSON error body) that describe a server-side failure, not a refusal.
_TRANSIENT_REASON = re.compile(
    r"\b(?:429|5\d\d)\b|internal server error|service unavailable|bad gateway|gateway time-?out|too many requests",
    re.IGNORECASE,
)


def split_windows(
    start: pd.Timestamp, end: pd.Timestamp, max_span: timedelta | None
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Cut ``[start, end)`` into consecutive half-open windows no longer than ``max_span``."""
    if max_span is None:
        return [(start, end)]
    windows = []
    lo = start
    while lo < end:
        hi = min(lo + max_span, end)
        windows.append((lo, hi))
        lo = hi
    return windows


def _http_status(exc: BaseException | None) -> int | None:
    """The HTTP status an exception carries (``requests``/``curl_cffi`` HTTPError), if any."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (as yfinance 1.7 surfaces it) is worth retrying."""
    if isinstance(exc, YFRateLimitError):
        return True
    status = _http_status(exc)
    if status is not None:
        return status == 429 or status >= 500
    if isinstance(exc, json.JSONDecodeError):
        # The chart API answers in JSON, refusals included; anything else is an error/maintenance page.
        return True
    if isinstance(exc, YFDataException) and "currently down" in str(exc).lower():
        return True
    if isinstance(exc, YFPricesMissingError):
        return bool(exc.yahoo_reason and _TRANSIENT_REASON.search(exc.yahoo_reason))
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


def _utc(value: datetime | pd.Timestamp) -> pd.Timestamp:
    """A UTC timestamp; naive values are taken as UTC."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _reason(exc: BaseException | None) -> str:
    """One line saying why a request failed (HTTP errors by status only: their URL carries the crumb)."""
    status = _http_status(exc)
    if status is not None:
        hint = " (unknown or delisted ticker?)" if status == 404 else ""
        return f"Yahoo answered HTTP {status}{hint}"
    if isinstance(exc, json.JSONDecodeError):
        return "Yahoo answered with a page that is not JSON (an error page?)"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def _yfinance_raises() -> Iterator[None]:
    """Make yfinance raise instead of logging and returning an empty frame (process-wide, restored after)."""
    debug = yf.config.debug
    previous = debug.hide_exceptions
    debug.hide_exceptions = False
    try:
        yield
    finally:
        debug.hide_exceptions = previous


def _forget_cached_responses() -> None:
    """Clear yfinance's in-process response cache, which also keeps failed answers for past ranges."""
    cache_get = getattr(getattr(getattr(yf, "data", None), "YfData", None), "cache_get", None)
    cache_clear = getattr(cache_get, "cache_clear", None)
    if callable(cache_clear):
        cache_clear()


class YFinanceSource(BarSource):
    """Bars from Yahoo Finance.

    Args:
        session: handed to yfinance (``yf.Ticker(t, session=session)``): a ``requests`` or ``curl_cffi``
            session, or None to let yfinance use its own (curl_cffi with browser impersonation).
        regular_session_only: for intraday intervals, ask Yahoo for no pre/post-market bars and drop any
            bar that does not start in the NYSE regular session (:func:`hft.data.calendar.in_session`).
        max_retries: retries after the first attempt of a request that failed transiently.
        backoff_s: first retry delay; it doubles on each further retry.
        sleep: how to wait (injected by tests).
        now: returns the current time (injected by tests); used for Yahoo's look-back limits.
    """

    name: ClassVar[str] = "yfinance"

    def __init__(
        self,
        session: Any = None,
        regular_session_only: bool = True,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if backoff_s < 0:
            raise ValueError("backoff_s must be >= 0")
        self._session = session
        self._regular_session_only = regular_session_only
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._now = now or (lambda: datetime.now(timezone.utc))

    def fetch(
        self, tickers: Sequence[str], start: datetime, end: datetime, interval: Interval
    ) -> pd.DataFrame:
        """Canonical bars of ``tickers`` in ``[start, end)`` (naive datetimes are UTC).

        Raises :class:`SourceError` when the range is outside what Yahoo serves, when a ticker is unknown
        or has no bars in the range, or when a transient failure outlasts the retries.
        """
        interval = Interval.parse(interval)
        lo, hi = _utc(start), _utc(end)
        if lo >= hi:
            raise SourceError(f"yfinance: empty range [{lo}, {hi}): start must be before end")
        if isinstance(tickers, str):
            tickers = [tickers]
        names = list(dict.fromkeys(t.strip().upper() for t in tickers or () if t and t.strip()))
        if not names:
            return empty_bars()
        now = _utc(self._now())
        limits = LIMITS[interval]
        if limits.lookback is not None and lo < now - limits.lookback:
            raise SourceError(
                f"yfinance: Yahoo serves {interval.value} bars only for the last {limits.lookback.days} days; "
                f"start {lo} is before {now - limits.lookback}"
            )
        request_end = min(hi, now)
        if request_end <= lo:
            raise SourceError(f"yfinance: start {lo} is in the future (now is {now})")
        windows = split_windows(lo, request_end, limits.max_span)

        fetched = pd.concat([self._fetch_ticker(t, windows, interval, lo, hi) for t in names], ignore_index=True)
        try:
            bars, dropped = clean_bars(fetched, lo, hi, interval, self._regular_session_only)
        except SchemaError as exc:
            raise SourceError(f"yfinance: unexpected answer for {interval.value} bars: {exc}") from exc
        log.info(
            "yfinance: fetched %d %s bar(s) of %s in %d window(s); dropped %d duplicate(s), %d outside [%s, %s), "
            "%d outside the regular session; kept %d",
            len(fetched),
            interval.value,
            ",".join(names),
            len(windows),
            dropped.duplicates,
            dropped.out_of_range,
            lo,
            hi,
            dropped.out_of_session,
            len(bars),
        )
        return bars

    def _fetch_ticker(
        self,
        ticker: str,
        windows: list[tuple[pd.Timestamp, pd.Timestamp]],
        interval: Interval,
        lo: pd.Timestamp,
        hi: pd.Timestamp,
    ) -> pd.DataFrame:
        """All windows of one ticker as (not yet cleaned) bars."""
        parts = []
        for w_lo, w_hi in windows:
            history = self._fetch_window(ticker, w_lo, w_hi, interval)
            if history is not None and not history.empty:
                parts.append(_history_to_bars(ticker, history, interval))
        if not parts:
            raise SourceError(f"yfinance: Yahoo returned no {interval.value} bars for {ticker} in [{lo}, {hi})")
        return pd.concat(parts, ignore_index=True)

    def _fetch_window(
        self, ticker: str, lo: pd.Timestamp, hi: pd.Timestamp, interval: Interval
    ) -> pd.DataFrame | None:
        """One yfinance request, retried while it fails transiently; None when Yahoo has no bars there."""
        attempts = self._max_retries + 1
        what = f"{interval.value} bars for {ticker} in [{lo}, {hi})"
        error: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                delay = self._backoff_s * 2 ** (attempt - 1)
                log.warning(
                    "yfinance: %s failed (%s), retry %d/%d in %.1fs",
                    what,
                    _reason(error),
                    attempt,
                    self._max_retries,
                    delay,
                )
                _forget_cached_responses()
                self._sleep(delay)
            try:
                with _yfinance_raises():
                    return yf.Ticker(ticker, session=self._session).history(
                        start=lo,
                        end=hi,
                        interval=interval.value,
                        prepost=not self._regular_session_only,
                        auto_adjust=False,
                        actions=False,
                        repair=False,
                        keepna=False,
                    )
            except YFPricesMissingError as exc:
                if exc.yahoo_reason is None:  # Yahoo answered, with no bars in this window
                    log.debug("yfinance: no %s", what)
                    return None
                error = exc
            # With exceptions on, yfinance raises from many layers: its own errors, the HTTP session's, json's,
            # KeyError/ValueError on malformed answers. All are classified; none escapes raw.
            except Exception as exc:  # noqa: BLE001
                error = exc
            if not is_transient(error):
                raise SourceError(f"yfinance: cannot fetch {what}: {_reason(error)}") from error
        assert error is not None  # the loop ran at least once and every way out of it returned or failed
        raise SourceError(f"yfinance: gave up on {what} after {attempts} attempt(s): {_reason(error)}") from error


def _history_to_bars(ticker: str, history: pd.DataFrame, interval: Interval) -> pd.DataFrame:
    """A yfinance ``history`` frame (exchange-local index, capitalised columns) as bar-layout columns."""
    index = pd.DatetimeIndex(history.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return pd.DataFrame(
        {
            "ticker": ticker,
            "ts": index,
            "interval": interval.value,
            "open": history["Open"].to_numpy(),
            "high": history["High"].to_numpy(),
            "low": history["Low"].to_numpy(),
            "close": history["Close"].to_numpy(),
            "volume": history["Volume"].to_numpy(),
        }
    )
