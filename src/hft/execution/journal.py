"""The executor's journal: every event of the executor (``hft_exec.EVENT_DTYPE`` records), appended and
fsynced before the predictions that caused them are acknowledged, plus the table of instrument ids.

Files in the journal folder::

    events.bin        fixed 56-byte records, appended; a record's index is its sequence number
    instruments.json  {"tickers": [...]}: instrument id = position in the list (append-only)

A crash can leave a torn last record; opening the journal cuts it off (that record's predictions were not
acknowledged, so they are delivered again and decided again).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from hft.errors import HftError

log = logging.getLogger(__name__)


class JournalError(HftError, RuntimeError):
    """The journal cannot be used (unreadable, or its instrument table is inconsistent)."""


class Journal:
    def __init__(self, folder: str | os.PathLike):
        from hft_exec import EVENT_DTYPE

        self.dtype = EVENT_DTYPE
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "events.bin"
        self.table_path = self.folder / "instruments.json"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        size = os.fstat(self._fd).st_size
        torn = size % self.dtype.itemsize
        if torn:
            log.warning("journal %s: cutting a torn last record (%d bytes)", self.path, torn)
            os.ftruncate(self._fd, size - torn)
            os.fsync(self._fd)
        self.records = (size - torn) // self.dtype.itemsize

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Records from index ``start`` up to ``stop`` (None: the end)."""
        stop = self.records if stop is None else min(stop, self.records)
        with open(self.path, "rb") as f:
            f.seek(start * self.dtype.itemsize)
            data = f.read(max(stop - start, 0) * self.dtype.itemsize)
        return np.frombuffer(data, dtype=self.dtype)

    def append(self, events: np.ndarray) -> int:
        """Append and fsync; returns the index of the first appended record."""
        first = self.records
        if len(events):
            data = np.ascontiguousarray(events, dtype=self.dtype).tobytes()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
            self.records += len(events)
        return first

    def instruments(self, universe: list[str]) -> list[str]:
        """The instrument table: the stored one, with tickers of ``universe`` it lacks appended (ids of
        known tickers never change), written atomically."""
        tickers: list[str] = []
        if self.table_path.exists():
            try:
                tickers = list(json.loads(self.table_path.read_text())["tickers"])
            except (ValueError, KeyError, TypeError) as exc:
                raise JournalError(f"{self.table_path} is not a valid instrument table: {exc}") from None
        added = [t for t in universe if t not in tickers]
        if added:
            tickers += added
            tmp = self.table_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"tickers": tickers}))
            os.replace(tmp, self.table_path)
        return tickers

    def adopt_instruments(self, tickers: list[str]) -> None:
        """Take ``tickers`` as the instrument table (a standby copying its leader's): the stored table must be
        a prefix of it (ids never change)."""
        stored = self.instruments([])
        if tickers[:len(stored)] != stored:
            raise JournalError(f"{self.table_path} gives tickers other ids than the leader's table ({stored} vs {tickers})")
        if len(tickers) > len(stored):
            self.instruments(tickers)

    def close(self) -> None:
        os.close(self._fd)
