"""Great Expectations suite: each rule catches its fault and names the rows' tickers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hft.data.validation import validate_bars
from hft.schemas import coerce_bars


@pytest.fixture(scope="module")
def clean():
    from bar_fixtures import make_bars

    return coerce_bars(make_bars(tickers=("AAA", "BBB"), start="2024-03-07", end="2024-03-08"))


def _failed(report):
    return {(f.expectation, f.column): f.unexpected_count for f in report.failures}


def test_validate_clean_bars_pass(clean):
    report = validate_bars(clean)
    assert report.success, report.summary()
    assert report.evaluated >= 20 and report.rows == len(clean)


@pytest.mark.parametrize(
    "mutate, expectation, column",
    [
        (lambda d: d.__setitem__("close", d["close"].where(d.index != 3, np.nan)),
         "expect_column_values_to_not_be_null", "close"),
        (lambda d: d.__setitem__("low", d["low"].where(d.index != 3, -1.0)),
         "expect_column_values_to_be_between", "low"),
        (lambda d: d.__setitem__("open", d["open"].where(d.index != 3, np.inf)),
         "expect_column_values_to_be_between", "open"),
        (lambda d: d.__setitem__("high", d["high"].where(d.index != 3, d["low"] - 0.5)),
         "expect_column_pair_values_a_to_be_greater_than_b", "high,low"),
        (lambda d: d.__setitem__("volume", d["volume"].where(d.index != 3, -5)),
         "expect_column_values_to_be_between", "volume"),
        (lambda d: d.__setitem__("volume", d["volume"].where(d.index != 3, np.inf)),
         "expect_column_values_to_be_between", "volume"),
        (lambda d: d.__setitem__("low", d["low"].where(d.index != 3, 1e-9)),
         "expect_column_values_to_be_between", "low"),
    ],
    ids=["nan_close", "negative_low", "infinite_open", "high_below_low", "negative_volume", "infinite_volume",
         "sub_min_price"],
)
def test_validate_bad_row_fails_its_expectation_and_rejects_only_its_ticker(clean, mutate, expectation, column):
    bad = clean.copy()
    mutate(bad)
    report = validate_bars(bad)
    assert not report.success
    assert (expectation, column) in _failed(report), report.summary()
    assert report.rejected_tickers == ("AAA",)


def test_validate_fractional_volumes_pass(clean):
    fractional = clean.assign(volume=clean["volume"] + 0.015766)
    report = validate_bars(fractional)
    assert report.success, report.summary()


def test_validate_duplicate_bar_fails_uniqueness(clean):
    bad = pd.concat([clean, clean.iloc[[10]]], ignore_index=True)
    report = validate_bars(bad)
    assert _failed(report)[("expect_compound_columns_to_be_unique", "ticker,interval,ts")] == 2


def test_validate_bar_outside_session_fails(clean):
    bad = clean.copy()
    bad.loc[bad.index[-1], "ts"] = pd.Timestamp("2024-03-09 15:00", tz="UTC")  # a Saturday
    report = validate_bars(bad)
    assert ("expect_column_values_to_be_in_set", "in_session") in _failed(report)
    assert report.rejected_tickers == ("BBB",)


def test_validate_misaligned_timestamp_fails(clean):
    bad = clean.copy()
    bad.loc[5, "ts"] = bad.loc[5, "ts"] + pd.Timedelta(seconds=30)
    assert ("expect_column_values_to_be_in_set", "aligned") in _failed(validate_bars(bad))


def test_validate_long_gap_fails_and_short_gap_passes(clean):
    aaa = clean[clean.ticker == "AAA"]
    day_one = aaa[aaa.ts < pd.Timestamp("2024-03-08", tz="UTC")]
    gap = day_one.drop(day_one.index[100:190])  # a 91-minute hole
    assert ("expect_column_values_to_be_between", "gap_minutes") in _failed(validate_bars(gap, max_gap_minutes=60))
    assert validate_bars(gap, max_gap_minutes=120).success


def test_validate_report_summary_names_failures_and_counts(clean):
    bad = clean.copy()
    bad["volume"] = bad["volume"].where(bad.index >= 4, -1)
    text = validate_bars(bad).summary()
    assert "expect_column_values_to_be_between(volume): 4 row(s)" in text and "AAA" in text
