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


def _old_format_lake(root, bars) -> None:
    """A lake as written before float64 volumes: int64 volumes, no format marker."""
    import pyarrow as pa

    lake = BarLake(str(root))
    for (ticker, day), part in bars.assign(date=bars["ts"].dt.tz_convert("America/New_York").dt.date).groupby(["ticker", "date"]):
        directory = lake.partition_dir("1m", ticker, day)
        lake.fs.create_dir(directory, recursive=True)
        table = pa.Table.from_pandas(part[["ts", "open", "high", "low", "close"]].reset_index(drop=True), preserve_index=False)
        table = table.append_column("volume", pa.array(part["volume"].astype("int64").to_numpy(), pa.int64()))
        pq.write_table(table, f"{directory}/bars.parquet")


def test_lake_written_with_int_volumes_is_upgraded_before_fractional_bars_join_it(tmp_path, bars_factory, spark):
    from hft.features.spark import read_bars

    old = coerce_bars(bars_factory(tickers=("AAA", "BBB"), start="2024-03-07", end="2024-03-07"))
    _old_format_lake(tmp_path, old)
    new = coerce_bars(bars_factory(tickers=("CCC",), start="2024-03-07", end="2024-03-07"))
    new["volume"] = new["volume"] + 0.015766  # Yahoo's fractional volumes
    BarLake(str(tmp_path)).write(new)
    files = sorted((tmp_path / "bars").rglob("bars.parquet"))
    assert len(files) == 3 and {str(pq.read_schema(f).field("volume").type) for f in files} == {"double"}
    assert (tmp_path / "bars" / "_format").read_text().strip() == "2"
    got = read_bars(spark, str(tmp_path / "bars"), "1m").toPandas()
    assert len(got) == len(old) + len(new)
    ccc = got[got["ticker"] == "CCC"].sort_values("ts")
    assert ccc["volume"].tolist() == new.sort_values("ts")["volume"].tolist()
    back = BarLake(str(tmp_path)).read("1m", ["AAA"])
    assert back["volume"].tolist() == old[old["ticker"] == "AAA"].sort_values("ts")["volume"].astype(float).tolist()


def test_upgrade_format_of_marked_lake_touches_nothing(tmp_path, bars_factory):
    from hft.data.lake import upgrade_format

    BarLake(str(tmp_path)).write(bars_factory(tickers=("AAA",), start="2024-03-07", end="2024-03-07"))
    assert upgrade_format(str(tmp_path / "bars")) == 0
    assert upgrade_format(str(tmp_path / "nowhere")) == 0
