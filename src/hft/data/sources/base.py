"""The one interface every market-data source implements."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar, NamedTuple

import pandas as pd

from hft.data import calendar
from hft.errors import HftError
from hft.schemas import Interval, coerce_bars


class SourceError(HftError):
    """A source cannot deliver what was asked (unknown ticker, empty answer, unreadable file...).

    The message is meant for the user: one line, saying what was asked and what went wrong.
    """


class BarSource(abc.ABC):
    """A source of bars.

    ``fetch`` returns canonical bars (see :func:`hft.schemas.coerce_bars`): UTC bar-start timestamps in
    ``[start, end)``, sorted by (ticker, ts), no duplicate (ticker, ts). Values are not validated here:
    validation decides what reaches the lake.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def fetch(
        self, tickers: Sequence[str], start: datetime, end: datetime, interval: Interval
    ) -> pd.DataFrame: ...


class Dropped(NamedTuple):
    """How many rows :func:`clean_bars` dropped, by reason."""

    duplicates: int
    out_of_range: int
    out_of_session: int


def clean_bars(
    bars: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    interval: Interval,
    regular_session_only: bool,
) -> tuple[pd.DataFrame, Dropped]:
    """Bar-layout rows made canonical: duplicate (ticker, ts) dropped keeping the last, rows outside
    ``[start, end)`` dropped, and for intraday intervals when asked, bars outside the regular session dropped;
    sorted by (ticker, ts) and typed by :func:`hft.schemas.coerce_bars`."""
    n = len(bars)
    bars = bars.drop_duplicates(subset=["ticker", "ts"], keep="last")
    duplicates = n - len(bars)
    in_range = ((bars["ts"] >= start) & (bars["ts"] < end)).to_numpy()
    bars = bars[in_range]
    out_of_session = 0
    if regular_session_only and interval.intraday and len(bars):
        keep = calendar.in_session(bars["ts"])
        out_of_session = int((~keep).sum())
        bars = bars[keep]
    bars = bars.sort_values(["ticker", "ts"], kind="stable").reset_index(drop=True)
    return coerce_bars(bars), Dropped(duplicates, int((~in_range).sum()), out_of_session)
