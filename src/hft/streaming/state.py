"""Per-ticker feature state: the recent bars of each (ticker, interval) in the current session, so a new
bar's features are computed exactly as the batch job computes them (same code: the reference engine).

Windows never cross sessions, so a bar's features need at most ``spec.max_lookback`` bars of its own
session: that is all the state keeps. Out-of-order and duplicate bars are refused with a reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hft.data.calendar import exchange_days, minutes_since_open
from hft.features.definitions import FeatureSpec
from hft.features.reference import feature_arrays, group_positions
from hft.streaming.messages import BarMessage

Key = tuple[str, str]  # (ticker, interval)


def bars_frame(bars: Iterable[BarMessage]) -> pd.DataFrame:
    rows = list(bars)
    return pd.DataFrame({
        "ticker": [b.ticker for b in rows],
        "ts": pd.to_datetime([b.ts_ms for b in rows], unit="ms", utc=True),
        "interval": [b.interval for b in rows],
        "open": [b.open for b in rows],
        "high": [b.high for b in rows],
        "low": [b.low for b in rows],
        "close": [b.close for b in rows],
        "volume": np.array([b.volume for b in rows], dtype=np.int64),
    })


@dataclass
class FeatureState:
    """Recent bars per (ticker, interval); :meth:`admit` then :meth:`features` per micro-batch."""

    spec: FeatureSpec = field(default_factory=FeatureSpec)
    bars: dict[Key, list[BarMessage]] = field(default_factory=dict)

    @property
    def keep(self) -> int:
        return self.spec.max_lookback

    def load(self, key: Key, history: Iterable[BarMessage]) -> None:
        self.bars[key] = sorted(history, key=lambda b: b.ts_ms)[-self.keep :]

    def last_ts(self, key: Key) -> int | None:
        history = self.bars.get(key)
        return history[-1].ts_ms if history else None

    def admit(self, bars: list[BarMessage]) -> tuple[list[BarMessage], list[tuple[BarMessage, str, str]]]:
        """Split a batch (in arrival order) into accepted bars and refused ones with (reason, detail):
        ``duplicate`` (same ticker and bar time seen before) or ``out_of_order`` (older than the latest)."""
        accepted: list[BarMessage] = []
        refused: list[tuple[BarMessage, str, str]] = []
        latest: dict[Key, int | None] = {}
        seen: set[tuple[str, str, int]] = set()
        for bar in bars:
            key = (bar.ticker, bar.interval)
            if key not in latest:
                latest[key] = self.last_ts(key)
                seen.update((bar.ticker, bar.interval, b.ts_ms) for b in self.bars.get(key, []))
            ident = (bar.ticker, bar.interval, bar.ts_ms)
            if ident in seen:
                refused.append((bar, "duplicate", f"{bar.ticker} {bar.interval} bar at {bar.ts.isoformat()} already seen"))
            elif latest[key] is not None and bar.ts_ms < latest[key]:
                refused.append((bar, "out_of_order", f"{bar.ticker} bar at {bar.ts.isoformat()} is older than the latest"))
            else:
                accepted.append(bar)
                seen.add(ident)
                latest[key] = bar.ts_ms
        return accepted, refused

    def features(self, new: list[BarMessage]) -> pd.DataFrame:
        """Features of ``new`` (admitted) bars, computed over the state plus the new bars, then the state
        is advanced. Columns ticker, interval, ts, close and the features; rows in the order of ``new``; a
        feature is NaN where its window is not full.

        Same formulas as the batch job (:func:`hft.features.reference.feature_arrays`), fed straight from
        the bars: each touched series' history followed by its new bars, already in time order."""
        columns = ["ticker", "interval", "ts", "close", *self.spec.feature_names()]
        if not new:
            return pd.DataFrame({c: pd.Series(dtype=object if c in ("ticker", "interval") else np.float64)
                                 for c in columns}).astype({"ts": "datetime64[us, UTC]"})
        series: dict[Key, list[int]] = {}
        for i, bar in enumerate(new):
            series.setdefault((bar.ticker, bar.interval), []).append(i)
        rows: list[BarMessage] = []
        key_id: list[int] = []
        at = np.empty(len(new), np.int64)  # row of each new bar
        for k, (key, idx) in enumerate(series.items()):
            rows.extend(self.bars.get(key, ()))
            at[idx] = np.arange(len(rows), len(rows) + len(idx))
            rows.extend(new[i] for i in idx)
            key_id.extend([k] * (len(rows) - len(key_id)))
        ts = pd.DatetimeIndex(np.array([b.ts_ms for b in rows], dtype="datetime64[ms]")).tz_localize("UTC")
        day = exchange_days(ts)
        group = np.asarray(key_id, np.int64) << np.int64(32) | (day - day.min())  # (series, session) ids
        prices = np.array([(b.open, b.high, b.low, b.close, b.volume) for b in rows], dtype=np.float64)
        out = feature_arrays(*prices.T, group_positions(group), minutes_since_open(ts), self.spec)
        frame = pd.DataFrame({
            "ticker": [b.ticker for b in new], "interval": [b.interval for b in new],
            "ts": ts[at].as_unit("us"), "close": prices[at, 3], **{name: values[at] for name, values in out.items()},
        })
        self._advance(new, day[at], {key: day[at[idx[0]] - 1] for key, idx in series.items() if self.bars.get(key)})
        return frame

    def _advance(self, new: list[BarMessage], days: np.ndarray, last_day: dict[Key, int]) -> None:
        """Append the batch to the state (``days``: each new bar's session; ``last_day``: the session of
        each touched series' newest stored bar); a bar of a new session clears its series' history first."""
        current = dict(last_day)
        for bar, d in zip(new, days):
            key = (bar.ticker, bar.interval)
            history = self.bars.setdefault(key, [])
            if history and current.get(key) != d:
                history.clear()  # a new session: earlier bars never enter its windows
            history.append(bar)
            current[key] = d
            del history[: -self.keep]
