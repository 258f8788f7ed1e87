"""Ingestion: source -> staging -> validation -> clean lake or quarantine.

Two steps so an orchestrator can run them as separate tasks that pass only paths:
:func:`stage` fetches bars into a staging Parquet file, :func:`store` validates a staged file and routes
each ticker's bars to the lake (passed) or the quarantine (failed). :func:`ingest` runs both.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow.parquet as pq

from hft.config import join_uri
from hft.data.calendar import EXCHANGE_TZ
from hft.data.lake import BarLake, Quarantine, filesystem
from hft.data.sources.base import BarSource, SourceError
from hft.data.validation import ValidationReport, validate_bars
from hft.schemas import Interval, bars_to_arrow, coerce_bars, empty_bars

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What an ingest did. ``ok`` is False when anything was quarantined."""

    fetched: int
    stored_new: int
    stored_updated: int
    stored_unchanged: int
    quarantined: int
    rejected_tickers: tuple[str, ...]
    quarantine_locations: tuple[str, ...]
    report: ValidationReport | None
    partitions: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.quarantined == 0

    def as_counts(self) -> dict:
        return {
            "bars_fetched": self.fetched,
            "bars_ingested": self.stored_new + self.stored_updated,
            "bars_new": self.stored_new,
            "bars_updated": self.stored_updated,
            "bars_unchanged": self.stored_unchanged,
            "bars_rejected": self.quarantined,
            "bars_quarantined": self.quarantined,
            "tickers_rejected": list(self.rejected_tickers),
        }


def session_range(start: date, end: date) -> tuple[datetime, datetime]:
    """New York session dates ``[start, end]`` (inclusive) as a UTC ``[start, end)`` datetime range
    (New York midnights, so extended hours are covered too)."""
    if start > end:
        raise SourceError(f"start {start} is after end {end}")
    lo = datetime.combine(start, datetime.min.time(), ZoneInfo(EXCHANGE_TZ))
    hi = datetime.combine(end + timedelta(days=1), datetime.min.time(), ZoneInfo(EXCHANGE_TZ))
    return lo.astimezone(timezone.utc), hi.astimezone(timezone.utc)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def fetch_bars(
    source: BarSource,
    tickers: Sequence[str],
    start: datetime,
    end: datetime,
    interval: Interval,
    lake: BarLake | None = None,
) -> pd.DataFrame:
    """Fetch bars; with ``lake`` (incremental mode) each ticker starts after its newest stored bar."""
    start, end = _utc(start), _utc(end)
    if start >= end:
        raise SourceError(f"empty range: start {start.isoformat()} is not before end {end.isoformat()}")
    if lake is None:
        return source.fetch(list(tickers), start, end, interval)
    frames = []
    for ticker in tickers:
        latest = lake.latest_ts(interval, ticker)
        t_start = start if latest is None else max(start, (latest + timedelta(minutes=interval.minutes)).to_pydatetime())
        if t_start >= end:
            log.info("%s: lake already holds bars up to %s, nothing to fetch", ticker, latest)
            continue
        frames.append(source.fetch([ticker], t_start, end, interval))
    return pd.concat(frames, ignore_index=True) if frames else empty_bars()


def stage(bars: pd.DataFrame, lake_root: str, label: str = "batch") -> str:
    """Write fetched bars to a staging Parquet file under ``<lake_root>/_staging``; returns its URI."""
    fs, path = filesystem(join_uri(lake_root, "_staging"))
    fs.create_dir(path, recursive=True)
    name = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{label}-{uuid.uuid4().hex[:8]}.parquet"
    pq.write_table(bars_to_arrow(bars), f"{path}/{name}", filesystem=fs)
    return join_uri(lake_root, "_staging", name)


def read_staged(uri: str) -> pd.DataFrame:
    fs, path = filesystem(uri)
    return coerce_bars(pq.read_table(path, filesystem=fs).to_pandas())


def store(
    bars: pd.DataFrame,
    lake_root: str,
    max_gap_minutes: int = 60,
    extended_hours: bool = False,
    label: str = "batch",
) -> IngestResult:
    """Validate ``bars``; write passing tickers to the lake and quarantine failing ones with the report."""
    bars = coerce_bars(bars)
    report = validate_bars(bars, max_gap_minutes=max_gap_minutes, extended_hours=extended_hours)
    rejected = set(report.rejected_tickers)
    bad = bars[bars["ticker"].isin(rejected)]
    good = bars[~bars["ticker"].isin(rejected)]
    locations: list[str] = []
    if not bad.empty:
        locations.append(Quarantine(lake_root).put(bad, report.to_dict(), label))
    written = BarLake(lake_root).write(good)
    result = IngestResult(
        fetched=len(bars),
        stored_new=written.new_rows,
        stored_updated=written.updated_rows,
        stored_unchanged=written.unchanged_rows,
        quarantined=len(bad),
        rejected_tickers=tuple(sorted(rejected)),
        quarantine_locations=tuple(locations),
        report=report,
        partitions=written.partitions,
    )
    level = logging.INFO if result.ok else logging.ERROR
    log.log(level, "ingest: %s", report.summary(), extra={"hft": result.as_counts()})
    return result


def ingest(
    source: BarSource,
    tickers: Sequence[str],
    start: datetime,
    end: datetime,
    interval: "Interval | str",
    lake_root: str,
    max_gap_minutes: int = 60,
    incremental: bool = False,
    extended_hours: bool = False,
) -> IngestResult:
    """Fetch, validate and store in one call (the CLI path)."""
    interval = Interval.parse(interval)
    lake = BarLake(lake_root) if incremental else None
    bars = fetch_bars(source, tickers, start, end, interval, lake=lake)
    return store(bars, lake_root, max_gap_minutes, extended_hours, label=source.name)


def stage_session(source_name: str, tickers: Sequence[str], day: date, interval: str, lake_root: str) -> str | None:
    """Fetch one New York session date from a named source into staging; None when it is no trading day.

    The orchestrator's ingest step: returns the staging URI to hand to :func:`store_staged`.
    """
    from hft.data.calendar import is_trading_day
    from hft.data.sources import make_source

    if not is_trading_day(day):
        log.info("%s is not a trading day: nothing to ingest", day)
        return None
    start, end = session_range(day, day)
    bars = fetch_bars(make_source(source_name), tickers, start, end, Interval.parse(interval))
    uri = stage(bars, lake_root, label=f"{source_name}-{day.isoformat()}")
    log.info("staged %d bars at %s", len(bars), uri, extra={"hft": {"bars_fetched": len(bars)}})
    return uri


def store_staged(uri: str, lake_root: str, max_gap_minutes: int = 60) -> IngestResult:
    """Validate a staged file into the lake/quarantine, then delete the staging file."""
    result = store(read_staged(uri), lake_root, max_gap_minutes, label="staged")
    fs, path = filesystem(uri)
    fs.delete_file(path)
    return result
