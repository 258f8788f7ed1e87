"""Bars from files on disk.

Two layouts are understood, in CSV or Parquet:

* **yfinance layout** — what ``Ticker.history(...).to_csv()`` or ``yf.download(..., multi_level_index=False)
  .to_csv()`` writes: a ``Datetime`` column (``Date`` for daily bars) of timestamps with their UTC offset
  (``2019-12-16 11:00:00-05:00``), then ``Open``, ``High``, ``Low``, ``Close``, ``Volume`` in any order and
  optionally ``Dividends``, ``Stock Splits``, ``Adj Close`` (ignored). One ticker per file: the file name's
  stem, upper-cased. Rows without any price and without volume (yfinance writes such rows for dividends and
  splits) carry no bar and are dropped.
* **yf.download layout** (CSV) — what ``yf.download(...).to_csv()`` writes by default: two header rows,
  ``Price`` (the field) and ``Ticker`` in either order (``group_by="ticker"`` puts ``Ticker`` first), then a
  ``Datetime`` (or ``Date``) row, one column per (field, ticker). Any number of tickers per file; the
  tickers come from the header, not the file name. A ticker's rows without prices (other tickers traded at
  that minute) are dropped like the dividend rows above.
* **bar layout** — the canonical :data:`hft.schemas.BAR_COLUMNS` with a ``ticker`` column (``interval``
  optional); any number of tickers per file.

Column names are matched case-insensitively. Volumes may be fractional (Yahoo's since about February 2026).
Files do not say their interval: the caller does, and each file is checked against it (see
:func:`check_spacing`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hft.data import calendar
from hft.data.sources.base import BarSource, SourceError, clean_bars
from hft.schemas import PRICE_COLUMNS, Interval, SchemaError, coerce_bars, empty_bars

log = logging.getLogger(__name__)

#: File suffix -> format.
FORMATS: dict[str, str] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_YF_TIME_COLUMNS = ("datetime", "date")
_VALUE_COLUMNS = (*PRICE_COLUMNS, "volume")
_OFFSET = re.compile(r"(?:[+-]\d{2}:?\d{2}|Z)$")


@dataclass(frozen=True)
class DataFile:
    """A file found on disk, with what its header says about it."""

    path: Path
    format: str
    #: "yfinance" or "bars".
    layout: str
    #: lower-cased column name -> the name as written.
    columns: dict[str, str]
    #: yf.download layout only: (lower-cased field, ticker) of each data column after the time column.
    fields: tuple[tuple[str, str], ...] = ()

    @property
    def tickers(self) -> set[str]:
        """The tickers a yf.download-layout file holds, else the file name's."""
        return {t for _, t in self.fields} if self.fields else {self.stem_ticker}

    @property
    def stem_ticker(self) -> str:
        return self.path.stem.strip().upper()


def _utc(value: datetime | pd.Timestamp) -> pd.Timestamp:
    """A UTC timestamp; naive values are taken as UTC."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _describe(delta: pd.Timedelta) -> str:
    minutes = delta.total_seconds() / 60
    return f"{minutes:g} minute(s)"


def check_spacing(ts: pd.Series, interval: Interval, where: str) -> None:
    """Raise :class:`SourceError` unless the sorted, unique UTC timestamps ``ts`` of one ticker fit ``interval``.

    Intraday: the most common gap between consecutive bars of the same (exchange-local) day must equal the
    interval, so missing bars, late session starts and early closes pass. Daily: no day may hold two bars.
    """
    if len(ts) < 2:
        return
    days = calendar.session_date(ts)
    same_day = days[1:] == days[:-1]
    gaps = ts.diff().iloc[1:][same_day].reset_index(drop=True)
    if not interval.intraday:
        if len(gaps):
            raise SourceError(
                f"files: {where}: {int(same_day.sum())} bar(s) share a day with the previous bar "
                f"(most common gap {_describe(gaps.mode().iloc[0])}); not {interval.value} bars"
            )
        return
    if gaps.empty:
        raise SourceError(f"files: {where}: at most one bar per day; not {interval.value} bars")
    usual = pd.Timedelta(gaps.mode().iloc[0])
    if usual != pd.Timedelta(minutes=interval.minutes):
        raise SourceError(
            f"files: {where}: bars are mostly {_describe(usual)} apart within a day; not {interval.value} bars"
        )


class FileSource(BarSource):
    """Bars read from files.

    Args:
        paths: files, or directories whose ``.csv``/``.parquet``/``.pq`` files are read (other files there are
            skipped; sub-directories are not searched).
        regular_session_only: for intraday intervals, drop bars that do not start in the NYSE regular session.
    """

    name: ClassVar[str] = "files"

    def __init__(self, paths: Sequence[str | Path], regular_session_only: bool = False) -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        self._paths = [Path(p) for p in paths]
        if not self._paths:
            raise ValueError("FileSource needs at least one path")
        self._regular_session_only = regular_session_only

    def fetch(
        self, tickers: Sequence[str] | None, start: datetime, end: datetime, interval: Interval
    ) -> pd.DataFrame:
        """Canonical bars of ``tickers`` (None or empty: every ticker found) in ``[start, end)``.

        Naive ``start``/``end`` are UTC. Raises :class:`SourceError` (one line, naming the file) for a missing
        path, an unknown format, missing columns, unparseable timestamps, spacing that does not fit
        ``interval``, or a requested ticker that no file holds.
        """
        interval = Interval.parse(interval)
        lo, hi = _utc(start), _utc(end)
        if isinstance(tickers, str):
            tickers = [tickers]
        wanted = {t.strip().upper() for t in tickers or () if t and t.strip()} or None
        files = [_inspect(path) for path in self.discover()]

        parts: list[pd.DataFrame] = []
        found: set[str] = set()
        nulls = duplicates = 0
        for file in files:
            if file.layout == "yfinance" and wanted is not None and not file.tickers & wanted:
                continue
            bars, held, file_nulls, file_duplicates = _load(file, interval, wanted)
            found.update(held)
            nulls += file_nulls
            duplicates += file_duplicates
            parts.append(bars)

        missing = sorted(wanted - found) if wanted is not None else []
        if missing:
            searched = ", ".join(str(p) for p in self._paths)
            raise SourceError(f"files: no file holds ticker(s) {', '.join(missing)} (searched {searched})")
        if not parts:
            return empty_bars()

        bars = pd.concat(parts, ignore_index=True)
        read = len(bars)
        bars, dropped = clean_bars(bars, lo, hi, interval, self._regular_session_only)
        log.info(
            "files: read %d %s bar(s) of %d ticker(s) from %d file(s); dropped %d null row(s), %d duplicate(s), "
            "%d outside [%s, %s), %d outside the regular session; kept %d",
            read + nulls + duplicates, interval.value, len(found), len(parts), nulls,
            duplicates + dropped.duplicates, dropped.out_of_range, lo, hi, dropped.out_of_session, len(bars),
        )
        return bars

    def discover(self) -> list[Path]:
        """The data files under the configured paths, in order (a directory's files sorted by name)."""
        files: list[Path] = []
        for path in self._paths:
            if not path.exists():
                raise SourceError(f"files: {path} does not exist")
            if path.is_dir():
                found = sorted(
                    p
                    for p in path.iterdir()
                    if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in FORMATS
                )
                if not found:
                    raise SourceError(f"files: directory {path} holds no .csv or .parquet file")
                skipped = sum(1 for p in path.iterdir() if p.is_file()) - len(found)
                if skipped:
                    log.debug("files: skipped %d non-data file(s) in %s", skipped, path)
                files.extend(found)
            elif path.suffix.lower() in FORMATS:
                files.append(path)
            else:
                suffix = path.suffix or "(no suffix)"
                raise SourceError(f"files: {path}: unknown format {suffix!r}; expected .csv or .parquet")
        return list(dict.fromkeys(files))


_HEADER_ROWS = ("price", "ticker")


def _download_header(path: Path) -> DataFile | None:
    """The yf.download layout's three header rows, read into a :class:`DataFile`; None for another layout."""
    rows = pd.read_csv(path, header=None, nrows=3, dtype=str, keep_default_na=False)
    first = [str(v).strip().lower() for v in rows.iloc[:, 0]]
    if len(first) < 3 or sorted(first[:2]) != list(_HEADER_ROWS) or first[2] not in _YF_TIME_COLUMNS:
        return None
    fields = rows.iloc[first.index("price"), 1:].str.strip().str.lower()
    tickers = rows.iloc[first.index("ticker"), 1:].str.strip().str.upper()
    pairs = tuple(zip(fields, tickers))
    for ticker in dict.fromkeys(tickers):
        missing = [c for c in _VALUE_COLUMNS if (c, ticker) not in pairs]
        if missing:
            raise SourceError(f"files: {path} is missing column(s) of {ticker}: {', '.join(missing)}")
    return DataFile(path=path, format="csv", layout="yfinance", columns={first[2]: first[2]}, fields=pairs)


def _inspect(path: Path) -> DataFile:
    """Read a file's header and tell its layout."""
    fmt = FORMATS[path.suffix.lower()]
    try:
        names = list(pd.read_csv(path, nrows=0).columns) if fmt == "csv" else list(pq.read_schema(path).names)
        if names and str(names[0]).strip().lower() in _HEADER_ROWS and fmt == "csv":
            download = _download_header(path)
            if download is not None:
                return download
    except (OSError, ValueError, pa.ArrowException) as exc:  # EmptyDataError and ArrowInvalid are ValueErrors
        raise SourceError(f"files: cannot read {path} as {fmt}: {_first_line(exc)}") from exc
    columns = {str(n).strip().lower(): str(n) for n in names}
    if "ticker" in columns and "ts" in columns:
        layout, required = "bars", _VALUE_COLUMNS
    elif any(c in columns for c in _YF_TIME_COLUMNS):
        layout, required = "yfinance", _VALUE_COLUMNS
    else:
        raise SourceError(
            f"files: {path} is missing column(s): Datetime or Date (yfinance layout), or ticker and ts (bar layout)"
        )
    missing = [c for c in required if c not in columns]
    if missing:
        raise SourceError(f"files: {path} is missing column(s): {', '.join(missing)}")
    return DataFile(path=path, format=fmt, layout=layout, columns=columns)


def _read(file: DataFile) -> pd.DataFrame:
    """The whole file, columns renamed to lower case (a yf.download-layout file in the long form: one row per
    (time, ticker) with a ``ticker`` column)."""
    try:
        if file.fields:
            wide = pd.read_csv(file.path, header=None, skiprows=3)
            time_column = next(iter(file.columns))
            parts = []
            for ticker in dict.fromkeys(t for _, t in file.fields):
                at = [i + 1 for i, (_, t) in enumerate(file.fields) if t == ticker]
                part = wide.iloc[:, [0, *at]].copy()
                part.columns = [time_column, *(file.fields[i - 1][0] for i in at)]
                parts.append(part.assign(ticker=ticker))
            return pd.concat(parts, ignore_index=True)
        if file.format == "csv":
            frame = pd.read_csv(file.path)
        else:
            frame = pd.read_parquet(file.path)
            if frame.index.name is not None:  # a yfinance frame saved with its Datetime index
                frame = frame.reset_index()
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise SourceError(f"files: cannot read {file.path}: {_first_line(exc)}") from exc
    return frame.rename(columns=lambda c: str(c).strip().lower())


def _timestamps(values: pd.Series, column: str, file: DataFile, interval: Interval) -> pd.Series:
    """UTC timestamps from a file's time column.

    Values with a UTC offset are exact. Values without one are UTC in the bar layout; in the yfinance layout
    they are accepted only for daily bars (dates, taken as exchange-local midnight).
    """
    where = f"{file.path} column {column!r}"
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    try:
        if pd.api.types.is_datetime64_dtype(values.dtype):
            naive = values
        else:
            text = values.astype("string").str.strip()
            if (text.isna() | text.eq("")).any():
                raise SourceError(f"files: unparseable timestamps in {where}: empty value(s)")
            aware = text.str.contains(_OFFSET, na=False)
            if aware.all():
                return pd.to_datetime(text, utc=True, format="ISO8601")
            if aware.any():
                raise SourceError(f"files: {where} mixes timestamps with and without a UTC offset")
            naive = pd.to_datetime(text, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise SourceError(f"files: unparseable timestamps in {where}: {_first_line(exc)}") from exc
    if file.layout == "bars":
        return naive.dt.tz_localize("UTC")
    if interval.intraday:
        raise SourceError(f"files: {where} has timestamps without a UTC offset; cannot place {interval.value} bars")
    return naive.dt.tz_localize(calendar.EXCHANGE_TZ, ambiguous=True, nonexistent="shift_forward").dt.tz_convert("UTC")


def _load(file: DataFile, interval: Interval, wanted: set[str] | None) -> tuple[pd.DataFrame, set[str], int, int]:
    """One file as canonical bars of the wanted tickers.

    Returns (bars, tickers the file holds, null rows dropped, duplicates dropped).
    """
    frame = _read(file)
    if file.layout == "yfinance":
        time_column = next(c for c in _YF_TIME_COLUMNS if c in frame.columns)
        held = file.tickers
        frame = frame.assign(ts=frame[time_column], interval=interval.value)
        if file.fields:
            if wanted is not None:
                frame = frame[frame["ticker"].isin(wanted).to_numpy()]
        else:
            frame = frame.assign(ticker=file.stem_ticker)
        null = (frame[list(PRICE_COLUMNS)].isna().all(axis=1) & frame["volume"].fillna(0).eq(0)).to_numpy()
        frame = frame[~null]
        nulls = int(null.sum())
    else:
        time_column = "ts"
        frame = frame.assign(ticker=frame["ticker"].astype("string").str.strip().str.upper())
        held = set(frame["ticker"].dropna().unique())
        if wanted is not None:
            frame = frame[frame["ticker"].isin(wanted).to_numpy()]
        frame = _select_interval(frame, file, interval)
        nulls = 0
    if frame.empty:
        return empty_bars(), held, nulls, 0

    frame = frame.reset_index(drop=True)
    frame["ts"] = _timestamps(frame["ts"], file.columns[time_column], file, interval)
    try:
        bars = coerce_bars(frame)
    except SchemaError as exc:
        raise SourceError(f"files: {file.path}: {exc}") from exc
    bars = bars.sort_values(["ticker", "ts"], kind="stable")
    before = len(bars)
    bars = bars.drop_duplicates(subset=["ticker", "ts"], keep="last").reset_index(drop=True)
    duplicates = before - len(bars)
    if duplicates:
        log.info("files: %s: dropped %d duplicate timestamp(s), keeping the last of each", file.path, duplicates)
    if nulls:
        log.info("files: %s: dropped %d row(s) without prices or volume", file.path, nulls)
    for ticker, ts in bars.groupby("ticker", sort=False)["ts"]:
        where = str(file.path) if file.layout == "yfinance" and not file.fields else f"{file.path} ({ticker})"
        check_spacing(ts.reset_index(drop=True), interval, where)
    return bars, held, nulls, duplicates


def _select_interval(frame: pd.DataFrame, file: DataFile, interval: Interval) -> pd.DataFrame:
    """Bar-layout rows of ``interval`` (all rows when the file has no interval column)."""
    if "interval" not in frame.columns:
        return frame.assign(interval=interval.value)
    given = frame["interval"].astype("string").str.strip().str.lower()
    match = (given == interval.value).fillna(False).to_numpy()
    if len(frame) and not match.any():
        held = ", ".join(sorted(given.dropna().unique()))
        raise SourceError(f"files: {file.path} holds {held} bars, not {interval.value}")
    if not match.all():
        log.info("files: %s: skipped %d row(s) of other intervals", file.path, int((~match).sum()))
    return frame[match].assign(interval=interval.value)
