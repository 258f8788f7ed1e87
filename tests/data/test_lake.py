"""The Parquet lake: partition layout, idempotent merge, incremental reads, quarantine."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pyarrow.parquet as pq

from hft.data.lake import BarLake, Quarantine
from hft.schemas import coerce_bars


def test_lake_write_partitions_by_interval_ticker_and_session_date(tmp_path, bars_factory):
    bars = bars_factory(tickers=("AAA", "BBB"), start="2024-03-07", end="2024-03-08")
    lake = BarLake(str(tmp_path))
    result = lake.write(bars)
    assert result.new_rows == len(bars) and result.updated_rows == 0
    assert lake.partitions("1m") == [
        ("AAA", date(2024, 3, 7)), ("AAA", date(2024, 3, 8)), ("BBB", date(2024, 3, 7)), ("BBB", date(2024, 3, 8))
    ]
    f = tmp_path / "bars" / "interval=1m" / "ticker=AAA" / "date=2024-03-07" / "bars.parquet"
    assert pq.read_schema(f).names == ["ts", "open", "high", "low", "close", "volume"]
    back = lake.read("1m")
    pd.testing.assert_frame_equal(back, coerce_bars(bars).sort_values(["ticker", "ts"]).reset_index(drop=True))


def test_lake_rewrite_same_bars_changes_nothing(tmp_path, bars_factory):
    bars = bars_factory(tickers=("AAA",), start="2024-03-07", end="2024-03-07")
    lake = BarLake(str(tmp_path))
    lake.write(bars)
    f = tmp_path / "bars" / "interval=1m" / "ticker=AAA" / "date=2024-03-07" / "bars.parquet"
    mtime = f.stat().st_mtime_ns
    again = lake.write(bars)
    assert (again.new_rows, again.updated_rows, again.unchanged_rows) == (0, 0, len(bars))
    assert again.partitions == ()
    assert f.stat().st_mtime_ns == mtime
    assert len(lake.read("1m")) == len(bars)


def test_lake_overlapping_write_adds_only_new_bars_and_replaces_corrections(tmp_path, bars_factory):
    bars = coerce_bars(bars_factory(tickers=("AAA",), start="2024-03-07", end="2024-03-07"))
    lake = BarLake(str(tmp_path))
    lake.write(bars.iloc[:200])
    second = bars.iloc[150:].copy()
    second.loc[second.index[0], "volume"] += 1  # a vendor correction of an already stored bar
    result = lake.write(second)
    assert result.new_rows == len(bars) - 200
    assert result.updated_rows == 1 and result.unchanged_rows == 49
    stored = lake.read("1m")
    assert len(stored) == len(bars)
    assert stored.loc[150, "volume"] == bars.loc[150, "volume"] + 1


def test_lake_latest_ts_and_filtered_read(tmp_path, bars_factory):
    bars = coerce_bars(bars_factory(tickers=("AAA", "BBB"), start="2024-03-07", end="2024-03-11"))
    lake = BarLake(str(tmp_path))
    lake.write(bars)
    assert lake.latest_ts("1m", "AAA") == bars[bars.ticker == "AAA"]["ts"].max()
    assert lake.latest_ts("1m", "ZZZ") is None
    part = lake.read("1m", tickers=["bbb"], start=date(2024, 3, 8), end=date(2024, 3, 8))
    assert set(part["ticker"]) == {"BBB"} and len(part) == 390
    assert lake.read("5m").empty


def test_lake_file_uri_root_works(tmp_path, bars_factory):
    bars = bars_factory(tickers=("AAA",), start="2024-03-07", end="2024-03-07")
    lake = BarLake(f"file://{tmp_path}")
    lake.write(bars)
    assert (tmp_path / "bars" / "interval=1m" / "ticker=AAA").is_dir()
    assert len(lake.read("1m")) == len(bars)


def test_quarantine_keeps_batch_and_report(tmp_path, bars_factory):
    bars = bars_factory(tickers=("AAA",), start="2024-03-07", end="2024-03-07").head(10)
    q = Quarantine(str(tmp_path))
    where = q.put(bars, {"success": False, "failures": []}, "files")
    batch = q.batches()[0]
    assert where.endswith(batch)
    assert len(pd.read_parquet(tmp_path / "quarantine" / batch / "bars.parquet")) == 10
    assert json.loads((tmp_path / "quarantine" / batch / "report.json").read_text())["success"] is False
