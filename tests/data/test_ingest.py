"""Ingest: good tickers reach the lake, bad ones are quarantined whole, re-runs are idempotent."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest

from hft.data.ingest import ingest, read_staged, stage, store
from hft.data.lake import BarLake, Quarantine
from hft.data.sources.base import BarSource, SourceError
from hft.schemas import coerce_bars

START = datetime(2024, 3, 7, tzinfo=timezone.utc)
END = datetime(2024, 3, 9, tzinfo=timezone.utc)


class FrameSource(BarSource):
    """Serves a fixed frame, like a vendor would, and records what was asked."""

    name = "frame"

    def __init__(self, frame):
        self.frame = coerce_bars(frame)
        self.calls = []

    def fetch(self, tickers, start, end, interval):
        self.calls.append((tuple(tickers), start, end))
        f = self.frame
        return f[f.ticker.isin(tickers) & (f.ts >= start) & (f.ts < end)].reset_index(drop=True)


def test_ingest_clean_source_stores_everything(tmp_path, bars_factory):
    bars = bars_factory(tickers=("AAA", "BBB"), start="2024-03-07", end="2024-03-08")
    result = ingest(FrameSource(bars), ["AAA", "BBB"], START, END, "1m", str(tmp_path))
    assert result.ok and result.fetched == len(bars) == result.stored_new
    assert result.as_counts()["bars_quarantined"] == 0
    assert len(BarLake(str(tmp_path)).read("1m")) == len(bars)


def test_ingest_bad_ticker_quarantined_and_good_ticker_stored(tmp_path, bars_factory):
    bars = bars_factory(tickers=("AAA", "BBB"), start="2024-03-07", end="2024-03-08")
    bars.loc[bars.index[bars.ticker == "BBB"][7], "high"] = 0.01  # high below low
    result = ingest(FrameSource(bars), ["AAA", "BBB"], START, END, "1m", str(tmp_path))
    assert not result.ok
    assert result.rejected_tickers == ("BBB",)
    assert result.quarantined == (bars.ticker == "BBB").sum()
    lake = BarLake(str(tmp_path))
    assert set(lake.read("1m")["ticker"]) == {"AAA"}
    batch = Quarantine(str(tmp_path)).batches()
    assert len(batch) == 1
    quarantined = pd.read_parquet(tmp_path / "quarantine" / batch[0] / "bars.parquet")
    assert len(quarantined) == result.quarantined


def test_ingest_bad_batch_never_touches_stored_bars(tmp_path, bars_factory):
    bars = bars_factory(tickers=("AAA",), start="2024-03-07", end="2024-03-08")
    ingest(FrameSource(bars), ["AAA"], START, END, "1m", str(tmp_path))
    before = BarLake(str(tmp_path)).read("1m")
    corrupt = bars.copy()
    corrupt["close"] = corrupt["close"] * -1
    result = ingest(FrameSource(corrupt), ["AAA"], START, END, "1m", str(tmp_path))
    assert not result.ok
    pd.testing.assert_frame_equal(BarLake(str(tmp_path)).read("1m"), before)


def test_ingest_rerun_is_idempotent(tmp_path, bars_factory):
    bars = bars_factory(tickers=("AAA",), start="2024-03-07", end="2024-03-08")
    ingest(FrameSource(bars), ["AAA"], START, END, "1m", str(tmp_path))
    again = ingest(FrameSource(bars), ["AAA"], START, END, "1m", str(tmp_path))
    assert again.stored_new == 0 and again.stored_unchanged == len(bars)
    assert len(BarLake(str(tmp_path)).read("1m")) == len(bars)


def test_ingest_incremental_fetches_only_after_latest_stored_bar(tmp_path, bars_factory):
    bars = coerce_bars(bars_factory(tickers=("AAA",), start="2024-03-07", end="2024-03-08"))
    first_day = bars[bars.ts < pd.Timestamp("2024-03-08", tz="UTC")]
    ingest(FrameSource(first_day), ["AAA"], START, END, "1m", str(tmp_path))
    source = FrameSource(bars)
    result = ingest(source, ["AAA"], START, END, "1m", str(tmp_path), incremental=True)
    assert source.calls[0][1] == first_day.ts.max() + pd.Timedelta(minutes=1)
    assert result.stored_new == len(bars) - len(first_day) == result.fetched


def test_ingest_empty_range_raises(tmp_path, bars_factory):
    with pytest.raises(SourceError, match="not before"):
        ingest(FrameSource(bars_factory()), ["AAA"], END, START, "1m", str(tmp_path))


def test_stage_then_store_roundtrip(tmp_path, bars_factory):
    bars = coerce_bars(bars_factory(tickers=("AAA",), start="2024-03-07", end="2024-03-07"))
    uri = stage(bars, str(tmp_path), "test")
    pd.testing.assert_frame_equal(read_staged(uri), bars)
    assert store(read_staged(uri), str(tmp_path)).stored_new == len(bars)
