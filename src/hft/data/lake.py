"""The Parquet lake of clean bars, and the quarantine of rejected batches.

Layout under ``<lake_root>``::

    bars/interval=1m/ticker=SPY/date=2024-01-02/bars.parquet     clean bars (hive partitions)
    features/...                                                 written by the Spark feature job
    quarantine/<batch id>/bars.parquet + report.json              rejected batches, never merged

Files under ``bars/`` hold ``ts, open, high, low, close, volume``; ``interval``, ``ticker`` and ``date``
(the New York session date) come from the partition path, which is how Spark reads them too
(``spark.read.option("basePath", ...).parquet(...)``).

Writes are idempotent: a partition is merged with what it already holds (same ``ts`` replaced, new ``ts``
added) and replaced atomically (write a temporary file, then rename), so re-ingesting a range changes
nothing and an interrupted write leaves the previous file intact. Roots may be local paths or URIs that
pyarrow understands; ``s3a://`` (Spark's spelling) is read as ``s3://``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hft.config import join_uri
from hft.data.calendar import session_date
from hft.schemas import BAR_ARROW_SCHEMA, Interval, coerce_bars, empty_bars

log = logging.getLogger(__name__)

_FILE = "bars.parquet"
_FILE_COLUMNS = ["ts", "open", "high", "low", "close", "volume"]
_FILE_SCHEMA = pa.schema([BAR_ARROW_SCHEMA.field(c) for c in _FILE_COLUMNS])


#: Layout version of the files under ``bars/``, written to ``bars/_format`` (Spark skips names starting
#: with ``_``). 1 (no marker): int64 volumes; 2: float64 volumes (fractional, see :mod:`hft.schemas`).
FORMAT_VERSION = 2
_FORMAT_FILE = "_format"


def upgrade_format(bars_root: str, create: bool = False) -> int:
    """Rewrite the files of a ``bars/`` tree written by an older layout to :data:`FORMAT_VERSION` (Spark
    cannot read int64 and float64 volumes side by side), then mark the tree. Cheap once marked: one small
    read. A missing tree is left alone, or (``create``, a writer's call) created and marked. Returns how
    many files were rewritten."""
    fs, path = filesystem(bars_root)
    marker = f"{path}/{_FORMAT_FILE}"
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        if create:
            _mark(fs, path)
        return 0
    if fs.get_file_info(marker).type == pafs.FileType.File:
        with fs.open_input_stream(marker) as f:
            if f.read().decode().strip() == str(FORMAT_VERSION):
                return 0
    rewritten = 0
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        if info.type == pafs.FileType.File and info.base_name == _FILE:
            if pq.read_schema(info.path, filesystem=fs).field("volume").type != pa.float64():
                table = pq.read_table(info.path, filesystem=fs).cast(_FILE_SCHEMA)
                _replace(fs, info.path.rsplit("/", 1)[0], table)
                rewritten += 1
    _mark(fs, path)
    if rewritten:
        log.warning("lake %s: %d file(s) upgraded to layout %d (float64 volumes)", bars_root, rewritten, FORMAT_VERSION)
    return rewritten


def _mark(fs: pafs.FileSystem, path: str) -> None:
    fs.create_dir(path, recursive=True)
    with fs.open_output_stream(f"{path}/{_FORMAT_FILE}") as f:
        f.write(f"{FORMAT_VERSION}\n".encode())


def _replace(fs: pafs.FileSystem, directory: str, table: pa.Table) -> None:
    """Write ``table`` as the partition's file, atomically (a temporary file renamed into place)."""
    tmp = f"{directory}/.{uuid.uuid4().hex}.tmp"
    pq.write_table(table, tmp, filesystem=fs)
    fs.move(tmp, f"{directory}/{_FILE}")  # atomic rename on local and POSIX filesystems


def filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow filesystem and path for a local path or URI."""
    uri = str(root)
    if uri.startswith("s3a://"):
        uri = "s3://" + uri[len("s3a://") :]
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(pafs.LocalFileSystem().normalize_path(_abspath(uri)))


def _abspath(path: str) -> str:
    from pathlib import Path

    return str(Path(path).absolute())


@dataclass(frozen=True)
class WriteResult:
    new_rows: int
    updated_rows: int
    unchanged_rows: int
    partitions: tuple[str, ...]


class BarLake:
    """Clean bars, partitioned by interval, ticker and session date."""

    def __init__(self, lake_root: str):
        self.root = str(lake_root)
        self.bars_root = join_uri(self.root, "bars")
        self.fs, self._bars_path = filesystem(self.bars_root)
        self._current = False  # whether upgrade_format has run for this lake

    # -- paths -------------------------------------------------------------------------------------------
    def partition_dir(self, interval: str, ticker: str, day: date) -> str:
        return f"{self._bars_path}/interval={interval}/ticker={ticker}/date={day.isoformat()}"

    def partition_uri(self, interval: str, ticker: str, day: date) -> str:
        return join_uri(self.bars_root, f"interval={interval}", f"ticker={ticker}", f"date={day.isoformat()}")

    # -- write -------------------------------------------------------------------------------------------
    def write(self, bars: pd.DataFrame) -> WriteResult:
        """Merge ``bars`` (validated, canonical) into their partitions. Safe to repeat."""
        bars = coerce_bars(bars)
        if bars.empty:
            return WriteResult(0, 0, 0, ())
        if not self._current:
            upgrade_format(self.bars_root, create=True)  # an older lake first: never int64 and float64 together
            self._current = True
        bars = bars.assign(date=session_date(bars["ts"]))
        new = updated = unchanged = 0
        touched: list[str] = []
        for (interval, ticker, day), part in bars.groupby(["interval", "ticker", "date"], sort=True):
            part = part.drop_duplicates("ts", keep="last")
            directory = self.partition_dir(interval, ticker, day)
            existing = self._read_file(f"{directory}/{_FILE}")
            incoming = part[_FILE_COLUMNS].set_index("ts")
            if existing is not None:
                old = existing.set_index("ts")
                common = incoming.index.intersection(old.index)
                same = (incoming.loc[common] == old.loc[common]).all(axis=1)
                unchanged += int(same.sum())
                updated += int((~same).sum())
                new += len(incoming) - len(common)
                if len(common) == len(incoming) and bool(same.all()):
                    continue  # nothing to change: leave the file alone
                merged = pd.concat([old.drop(index=common), incoming]).sort_index()
            else:
                new += len(incoming)
                merged = incoming.sort_index()
            self._write_file(directory, merged.reset_index())
            touched.append(self.partition_uri(interval, ticker, day))
        result = WriteResult(new, updated, unchanged, tuple(touched))
        log.info(
            "lake write: %d new, %d updated, %d unchanged bars in %d partition(s)",
            new, updated, unchanged, len(touched),
            extra={"hft": {"bars_new": new, "bars_updated": updated, "bars_unchanged": unchanged}},
        )
        return result

    def _write_file(self, directory: str, frame: pd.DataFrame) -> None:
        self.fs.create_dir(directory, recursive=True)
        _replace(self.fs, directory, pa.Table.from_pandas(frame[_FILE_COLUMNS], schema=_FILE_SCHEMA, preserve_index=False))

    def _read_file(self, path: str) -> pd.DataFrame | None:
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        frame = pq.read_table(path, filesystem=self.fs, schema=_FILE_SCHEMA).to_pandas()
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        return frame

    # -- read --------------------------------------------------------------------------------------------
    def partitions(self, interval: str) -> list[tuple[str, date]]:
        """(ticker, session date) pairs stored for ``interval``, sorted."""
        base = f"{self._bars_path}/interval={interval}"
        if self.fs.get_file_info(base).type != pafs.FileType.Directory:
            return []
        out = []
        for info in self.fs.get_file_info(pafs.FileSelector(base, recursive=True)):
            if info.type == pafs.FileType.File and info.base_name == _FILE:
                parts = dict(p.split("=", 1) for p in info.path[len(base) + 1 :].split("/")[:-1])
                out.append((parts["ticker"], date.fromisoformat(parts["date"])))
        return sorted(out)

    def read(
        self,
        interval: "Interval | str",
        tickers: Sequence[str] | None = None,
        start: date | None = None,
        end: date | None = None,
    ) -> pd.DataFrame:
        """Canonical bars of ``interval`` for session dates in ``[start, end]`` (inclusive), sorted."""
        interval = Interval.parse(interval).value
        wanted = {t.upper() for t in tickers} if tickers else None
        frames = []
        for ticker, day in self.partitions(interval):
            if wanted is not None and ticker not in wanted:
                continue
            if (start and day < start) or (end and day > end):
                continue
            frame = self._read_file(f"{self.partition_dir(interval, ticker, day)}/{_FILE}")
            if frame is not None:  # listed a moment ago; gone if a writer replaced it in between
                frames.append(frame.assign(ticker=ticker, interval=interval))
        if not frames:
            return empty_bars()
        return coerce_bars(pd.concat(frames, ignore_index=True)).sort_values(["ticker", "ts"]).reset_index(drop=True)

    def latest_ts(self, interval: "Interval | str", ticker: str) -> pd.Timestamp | None:
        """Newest bar timestamp stored for ``ticker`` (for incremental ingest), or None."""
        interval = Interval.parse(interval).value
        days = [d for t, d in self.partitions(interval) if t == ticker.upper()]
        if not days:
            return None
        frame = self._read_file(f"{self.partition_dir(interval, ticker.upper(), max(days))}/{_FILE}")
        return None if frame is None else frame["ts"].max()


class Quarantine:
    """Rejected batches, kept whole with their validation report; never read by the pipeline."""

    def __init__(self, lake_root: str):
        self.root = join_uri(str(lake_root), "quarantine")
        self.fs, self._path = filesystem(self.root)

    def put(self, bars: pd.DataFrame, report: dict, label: str) -> str:
        """Store ``bars`` exactly as received and ``report``; returns the batch's location."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        batch_id = f"{stamp}-{label}-{uuid.uuid4().hex[:8]}"
        directory = f"{self._path}/{batch_id}"
        self.fs.create_dir(directory, recursive=True)
        table = pa.Table.from_pandas(bars.reset_index(drop=True), preserve_index=False)
        pq.write_table(table, f"{directory}/bars.parquet", filesystem=self.fs)
        with self.fs.open_output_stream(f"{directory}/report.json") as out:
            out.write(json.dumps(report, indent=2, default=str).encode())
        location = join_uri(self.root, batch_id)
        log.warning("quarantined %d bars at %s", len(bars), location, extra={"hft": {"bars_quarantined": len(bars)}})
        return location

    def batches(self) -> list[str]:
        if self.fs.get_file_info(self._path).type != pafs.FileType.Directory:
            return []
        return sorted(i.base_name for i in self.fs.get_file_info(pafs.FileSelector(self._path)) if i.type == pafs.FileType.Directory)

