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

from hft.data.calendar import session_date
from hft.features.definitions import FeatureSpec
from hft.features.reference import compute_features
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
        is advanced. Rows come back in the order of ``new``; a feature is NaN where its window is not full."""
        if not new:
            return compute_features(bars_frame([]), self.spec, labelled_only=False)
        keys = {(b.ticker, b.interval) for b in new}
        context = [b for k in keys for b in self.bars.get(k, [])]
        frame = bars_frame(context + new)
        feats = compute_features(frame, self.spec, labelled_only=False)
        wanted = pd.DataFrame({"ticker": [b.ticker for b in new], "interval": [b.interval for b in new],
                               "ts": pd.to_datetime([b.ts_ms for b in new], unit="ms", utc=True)})
        out = wanted.merge(feats, on=["ticker", "interval", "ts"], how="left", validate="one_to_one")
        self._advance(new)
        return out

    def _advance(self, new: list[BarMessage]) -> None:
        """Append the batch to the state; a bar of a new session clears its key's history first."""
        history_keys = {(b.ticker, b.interval) for b in new}
        last = [self.bars[k][-1] for k in history_keys if self.bars.get(k)]
        stamps = pd.to_datetime([b.ts_ms for b in [*last, *new]], unit="ms", utc=True)
        days = session_date(pd.DatetimeIndex(stamps))  # one vectorised call per batch
        day_of = {id(b): d for b, d in zip([*last, *new], days)}
        for bar in new:
            key = (bar.ticker, bar.interval)
            history = self.bars.setdefault(key, [])
            if history and day_of[id(history[-1])] != day_of[id(bar)]:
                history.clear()  # a new session: earlier bars never enter its windows
            history.append(bar)
            del history[: -self.keep]
