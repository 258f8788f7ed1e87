"""NYSE trading calendar, pure pandas/numpy.

Rule-based: the regular full-day holidays and 13:00 early closes of the NYSE, with the exchange's
weekend-observance rules. Ad-hoc closures (national days of mourning, weather) are not modelled.

All timestamps going in and out are UTC; sessions are computed in :data:`EXCHANGE_TZ`, so daylight saving
time is handled by localizing exchange wall-clock times.
"""

from __future__ import annotations

import functools
import logging
from datetime import date, datetime, time, timedelta

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

EXCHANGE_TZ = "America/New_York"
REGULAR_OPEN = time(9, 30)
REGULAR_CLOSE = time(16, 0)
EARLY_CLOSE = time(13, 0)
EXTENDED_OPEN = time(4, 0)
EXTENDED_CLOSE = time(20, 0)
#: Extended-hours close on an early-close day.
EXTENDED_EARLY_CLOSE = time(17, 0)

_JUNETEENTH_FIRST_YEAR = 2022
_SECONDS_PER_DAY = 86_400


def _minute_of_day(t: time) -> int:
    return t.hour * 60 + t.minute


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The ``n``-th (1-based) ``weekday`` (Mon=0) of a month."""
    first = date(year, month, 1)
    offset = (weekday - first.weekday()) % 7
    return first + timedelta(days=offset + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    """The last ``weekday`` (Mon=0) of a month."""
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def easter(year: int) -> date:
    """Western (Gregorian) Easter Sunday, by the anonymous Gregorian algorithm."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l = (32 + 2 * e + 2 * i - h - k) % 7  # noqa: E741 - name from the published algorithm
    m = (a + 11 * h + 22 * l) // 451
    month, day = divmod(h + l - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _observed(d: date) -> date:
    """Saturday holiday -> preceding Friday, Sunday holiday -> following Monday."""
    if d.weekday() == 5:
        return d - timedelta(days=1)
    if d.weekday() == 6:
        return d + timedelta(days=1)
    return d


@functools.lru_cache(maxsize=512)
def _holidays(year: int) -> frozenset[date]:
    days: set[date] = set()
    new_year = date(year, 1, 1)
    if new_year.weekday() != 5:  # NYSE rule: a Saturday New Year's Day is not observed on Friday Dec 31.
        days.add(_observed(new_year))
    days.add(_nth_weekday(year, 1, 0, 3))  # Martin Luther King Jr. Day
    days.add(_nth_weekday(year, 2, 0, 3))  # Washington's Birthday
    days.add(easter(year) - timedelta(days=2))  # Good Friday
    days.add(_last_weekday(year, 5, 0))  # Memorial Day
    if year >= _JUNETEENTH_FIRST_YEAR:
        days.add(_observed(date(year, 6, 19)))
    days.add(_observed(date(year, 7, 4)))
    days.add(_nth_weekday(year, 9, 0, 1))  # Labor Day
    days.add(_nth_weekday(year, 11, 3, 4))  # Thanksgiving
    days.add(_observed(date(year, 12, 25)))
    return frozenset(days)


def holidays(year: int) -> set[date]:
    """NYSE full-day holidays of ``year`` (observed dates)."""
    return set(_holidays(year))


@functools.lru_cache(maxsize=512)
def _early_closes(year: int) -> frozenset[date]:
    days: set[date] = set()
    if date(year, 7, 4).weekday() in (1, 2, 3, 4):  # July 4 on Tue-Fri: July 3 closes early.
        days.add(date(year, 7, 3))
    days.add(_nth_weekday(year, 11, 3, 4) + timedelta(days=1))  # day after Thanksgiving
    christmas_eve = date(year, 12, 24)
    if christmas_eve.weekday() < 5 and christmas_eve not in _holidays(year):
        days.add(christmas_eve)
    return frozenset(days)


def early_closes(year: int) -> set[date]:
    """Days of ``year`` on which the regular session closes at 13:00."""
    return set(_early_closes(year))


def is_trading_day(d: date) -> bool:
    """True for a weekday that is not an NYSE holiday."""
    if isinstance(d, datetime):
        d = d.date()
    return d.weekday() < 5 and d not in _holidays(d.year)


def trading_days(start: date, end: date) -> list[date]:
    """Trading days in ``[start, end]`` (both ends inclusive), ascending."""
    if start > end:
        return []
    return [d.date() for d in pd.bdate_range(start, end) if is_trading_day(d.date())]


def _session_minutes(d: date, extended: bool) -> tuple[int, int]:
    """(open, close) minute-of-day in exchange local time of a trading day."""
    early = d in _early_closes(d.year)
    if extended:
        close = EXTENDED_EARLY_CLOSE if early else EXTENDED_CLOSE
        return _minute_of_day(EXTENDED_OPEN), _minute_of_day(close)
    close = EARLY_CLOSE if early else REGULAR_CLOSE
    return _minute_of_day(REGULAR_OPEN), _minute_of_day(close)


def session_bounds(d: date, extended: bool = False) -> tuple[pd.Timestamp, pd.Timestamp]:
    """UTC ``[open, close)`` of trading day ``d``; raises ValueError when ``d`` is not a trading day."""
    if isinstance(d, datetime):
        d = d.date()
    if not is_trading_day(d):
        raise ValueError(f"{d.isoformat()} is not an NYSE trading day")
    open_min, close_min = _session_minutes(d, extended)
    midnight = pd.Timestamp(d)
    bounds = [
        (midnight + pd.Timedelta(minutes=m)).tz_localize(EXCHANGE_TZ).tz_convert("UTC") for m in (open_min, close_min)
    ]
    return bounds[0], bounds[1]


def _local_seconds(ts: pd.Series | pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Exchange wall-clock seconds since the epoch of each timestamp, and a mask of missing values.

    Naive timestamps are taken as UTC.
    """
    index = pd.DatetimeIndex(ts)
    if index.tz is None:
        index = index.tz_localize("UTC")
    local = index.tz_convert(EXCHANGE_TZ).tz_localize(None)
    missing = np.asarray(local.isna())
    seconds = local.to_numpy().astype("datetime64[s]").astype(np.int64)
    seconds[missing] = 0
    return seconds, missing


def _day_table(days: np.ndarray) -> tuple[int, np.ndarray]:
    """First epoch day and the ``date`` of each epoch day from ``days.min()`` to ``days.max()``."""
    first, last = int(days.min()), int(days.max())
    epoch = date(1970, 1, 1).toordinal()
    table = np.array([date.fromordinal(epoch + n) for n in range(first, last + 1)], dtype=object)
    return first, table


def exchange_days(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Exchange-local calendar day of each UTC timestamp as an int64 day number (days since 1970-01-01):
    :func:`session_date` as integers, for grouping. Raises ValueError when a timestamp is missing."""
    seconds, missing = _local_seconds(ts)
    if missing.any():
        raise ValueError("exchange_days: missing timestamps")
    return seconds // _SECONDS_PER_DAY


def session_date(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """The exchange-local calendar date (``datetime.date``) of each UTC timestamp; None where missing."""
    seconds, missing = _local_seconds(ts)
    out = np.full(len(seconds), None, dtype=object)
    if len(seconds) == 0 or missing.all():
        return out
    days = seconds // _SECONDS_PER_DAY
    first, table = _day_table(days[~missing])
    out[~missing] = table[days[~missing] - first]
    return out


def in_session(ts: pd.Series | pd.DatetimeIndex, extended: bool = False) -> np.ndarray:
    """True where a bar-start UTC timestamp lies in ``[open, close)`` of a trading day's session."""
    seconds, missing = _local_seconds(ts)
    out = np.zeros(len(seconds), dtype=bool)
    if len(seconds) == 0 or missing.all():
        return out
    days = seconds // _SECONDS_PER_DAY
    minute = (seconds - days * _SECONDS_PER_DAY) / 60.0
    first, table = _day_table(days[~missing])
    opens = np.full(len(table), np.inf)
    closes = np.full(len(table), -np.inf)
    for i, d in enumerate(table):
        if is_trading_day(d):
            opens[i], closes[i] = _session_minutes(d, extended)
    idx = np.where(missing, 0, days - first)
    out = (minute >= opens[idx]) & (minute < closes[idx]) & ~missing
    return out


def minutes_since_open(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Minutes since 09:30 exchange local time on each timestamp's local date (NaN where missing).

    No trading-day check: a Saturday 10:00 bar gives 30.0.
    """
    seconds, missing = _local_seconds(ts)
    days = seconds // _SECONDS_PER_DAY
    minutes = (seconds - days * _SECONDS_PER_DAY) / 60.0 - _minute_of_day(REGULAR_OPEN)
    minutes[missing] = np.nan
    return minutes
