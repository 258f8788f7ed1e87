"""Tests of the NYSE trading calendar."""

from __future__ import annotations

import time as wallclock
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from hft.data import calendar as cal


def _utc(*stamps: str) -> pd.DatetimeIndex:
    """UTC timestamps from New York wall-clock strings."""
    return pd.DatetimeIndex(stamps).tz_localize(cal.EXCHANGE_TZ).tz_convert("UTC")


@pytest.mark.parametrize(
    "day",
    [
        date(2024, 1, 1),
        date(2024, 1, 15),
        date(2024, 2, 19),
        date(2024, 3, 29),  # Good Friday
        date(2024, 5, 27),
        date(2024, 6, 19),
        date(2024, 7, 4),
        date(2024, 9, 2),
        date(2024, 11, 28),
        date(2024, 12, 25),
        date(2025, 1, 1),
        date(2025, 1, 20),
        date(2025, 2, 17),
        date(2025, 4, 18),  # Good Friday
        date(2025, 5, 26),
        date(2025, 6, 19),
        date(2025, 7, 4),
        date(2025, 9, 1),
        date(2025, 11, 27),
        date(2025, 12, 25),
    ],
)
def test_holidays_known_2024_2025_dates_are_holidays(day: date) -> None:
    assert day in cal.holidays(day.year)
    assert not cal.is_trading_day(day)


def test_holidays_each_year_has_ten_rule_holidays_since_juneteenth() -> None:
    assert len(cal.holidays(2024)) == 10
    assert len(cal.holidays(2025)) == 10


def test_holidays_adhoc_closure_2025_01_09_is_trading_day() -> None:
    assert date(2025, 1, 9) not in cal.holidays(2025)
    assert cal.is_trading_day(date(2025, 1, 9))


def test_holidays_juneteenth_on_sunday_2022_observed_monday() -> None:
    assert date(2022, 6, 20) in cal.holidays(2022)
    assert date(2022, 6, 19) not in cal.holidays(2022)


def test_holidays_before_2022_have_no_juneteenth() -> None:
    assert date(2021, 6, 18) not in cal.holidays(2021)
    assert cal.is_trading_day(date(2021, 6, 18))


def test_holidays_saturday_new_year_2022_not_observed_on_friday() -> None:
    assert date(2021, 12, 31) not in cal.holidays(2021)
    assert cal.is_trading_day(date(2021, 12, 31))
    assert not any(d.month == 1 and d.day <= 3 for d in cal.holidays(2022))


def test_holidays_saturday_christmas_2021_observed_friday() -> None:
    assert date(2021, 12, 24) in cal.holidays(2021)
    assert date(2021, 12, 24) not in cal.early_closes(2021)


def test_holidays_sunday_independence_day_2021_observed_monday() -> None:
    assert date(2021, 7, 5) in cal.holidays(2021)


def test_holidays_saturday_independence_day_2026_observed_friday() -> None:
    assert date(2026, 7, 3) in cal.holidays(2026)
    assert date(2026, 7, 2) not in cal.early_closes(2026)


def test_easter_known_dates_match() -> None:
    assert cal.easter(2024) == date(2024, 3, 31)
    assert cal.easter(2025) == date(2025, 4, 20)
    assert cal.easter(2019) == date(2019, 4, 21)
    assert cal.easter(2038) == date(2038, 4, 25)


def test_early_closes_2024_match_nyse() -> None:
    assert cal.early_closes(2024) == {date(2024, 7, 3), date(2024, 11, 29), date(2024, 12, 24)}


def test_early_closes_july_4_on_monday_2022_has_no_july_early_close() -> None:
    assert cal.early_closes(2022) == {date(2022, 11, 25)}


def test_is_trading_day_weekend_false() -> None:
    assert not cal.is_trading_day(date(2024, 3, 9))
    assert not cal.is_trading_day(date(2024, 3, 10))
    assert cal.is_trading_day(date(2024, 3, 11))


def test_trading_days_inclusive_range_skips_weekends_and_holidays() -> None:
    days = cal.trading_days(date(2024, 3, 27), date(2024, 4, 2))
    assert days == [date(2024, 3, 27), date(2024, 3, 28), date(2024, 4, 1), date(2024, 4, 2)]


def test_trading_days_full_year_2024_has_252_days() -> None:
    assert len(cal.trading_days(date(2024, 1, 1), date(2024, 12, 31))) == 252


def test_trading_days_reversed_range_empty() -> None:
    assert cal.trading_days(date(2024, 4, 2), date(2024, 4, 1)) == []


def test_session_bounds_dst_shift_moves_utc_open() -> None:
    open_before, close_before = cal.session_bounds(date(2024, 3, 8))
    open_after, close_after = cal.session_bounds(date(2024, 3, 11))
    assert open_before == pd.Timestamp("2024-03-08 14:30", tz="UTC")
    assert close_before == pd.Timestamp("2024-03-08 21:00", tz="UTC")
    assert open_after == pd.Timestamp("2024-03-11 13:30", tz="UTC")
    assert close_after == pd.Timestamp("2024-03-11 20:00", tz="UTC")


def test_session_bounds_early_close_ends_at_13() -> None:
    opened, closed = cal.session_bounds(date(2024, 11, 29))
    assert opened == pd.Timestamp("2024-11-29 14:30", tz="UTC")
    assert closed == pd.Timestamp("2024-11-29 18:00", tz="UTC")


def test_session_bounds_extended_hours_span_4_to_20_or_17() -> None:
    assert cal.session_bounds(date(2024, 3, 11), extended=True) == (
        pd.Timestamp("2024-03-11 08:00", tz="UTC"),
        pd.Timestamp("2024-03-12 00:00", tz="UTC"),
    )
    assert cal.session_bounds(date(2024, 11, 29), extended=True)[1] == pd.Timestamp("2024-11-29 22:00", tz="UTC")


def test_session_bounds_holiday_raises_value_error() -> None:
    with pytest.raises(ValueError, match="2024-03-29"):
        cal.session_bounds(date(2024, 3, 29))


def test_session_date_evening_utc_maps_to_previous_ny_date() -> None:
    ts = pd.DatetimeIndex(["2024-03-12 02:00", "2024-03-12 14:00"], tz="UTC")
    assert list(cal.session_date(ts)) == [date(2024, 3, 11), date(2024, 3, 12)]


def test_session_date_series_input_returns_dates() -> None:
    out = cal.session_date(pd.Series(_utc("2024-07-01 09:30")))
    assert isinstance(out, np.ndarray)
    assert out[0] == date(2024, 7, 1)


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2024-03-11 09:29", False),
        ("2024-03-11 09:30", True),
        ("2024-03-11 15:59", True),
        ("2024-03-11 16:00", False),
        ("2024-03-09 10:00", False),  # Saturday
        ("2024-03-29 10:00", False),  # Good Friday
        ("2024-11-29 12:59", True),
        ("2024-11-29 13:00", False),  # early close
        ("2024-03-08 09:30", True),  # before the DST switch
    ],
)
def test_in_session_regular_edges_match(local: str, expected: bool) -> None:
    assert cal.in_session(_utc(local)).tolist() == [expected]


def test_in_session_extended_edges_match() -> None:
    ts = _utc("2024-03-11 03:59", "2024-03-11 04:00", "2024-03-11 19:59", "2024-03-11 20:00", "2024-11-29 16:59",
              "2024-11-29 17:00")
    assert cal.in_session(ts, extended=True).tolist() == [False, True, True, False, True, False]


def test_in_session_series_with_missing_value_false() -> None:
    ts = pd.Series([pd.Timestamp("2024-03-11 14:00", tz="UTC"), pd.NaT], dtype="datetime64[ns, UTC]")
    assert cal.in_session(ts).tolist() == [True, False]


def test_in_session_empty_input_empty_output() -> None:
    assert cal.in_session(pd.DatetimeIndex([], tz="UTC")).shape == (0,)


def test_in_session_one_year_of_minutes_counts_all_session_minutes() -> None:
    ts = pd.date_range("2024-01-01", "2025-01-01", freq="1min", tz="UTC", inclusive="left")
    started = wallclock.perf_counter()
    mask = cal.in_session(ts)
    elapsed = wallclock.perf_counter() - started
    # 252 days, 3 early closes of 210 minutes instead of 390.
    assert mask.sum() == 249 * 390 + 3 * 210
    assert elapsed < 2.0


def test_minutes_since_open_counts_from_930_local() -> None:
    ts = _utc("2024-03-08 09:30", "2024-03-11 10:15", "2024-03-11 09:00", "2024-03-09 16:00")
    assert cal.minutes_since_open(ts).tolist() == [0.0, 45.0, -30.0, 390.0]


def test_exchange_days_are_session_dates_as_day_numbers_and_refuse_missing_stamps():
    ts = pd.DatetimeIndex(["2024-03-08 02:00", "2024-03-08 14:30", "2024-11-04 04:59", "2024-11-04 05:00"], tz="UTC")
    days = cal.exchange_days(ts)
    epoch = date(1970, 1, 1)
    assert [epoch + timedelta(days=int(d)) for d in days] == list(cal.session_date(ts))
    assert list(days - days[0]) == [0, 1, 241, 242]  # 02:00 UTC is the evening before in New York
    with pytest.raises(ValueError, match="missing"):
        cal.exchange_days(pd.DatetimeIndex([pd.NaT, "2024-03-08"], tz="UTC"))
