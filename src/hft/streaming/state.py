"""Per-ticker feature state: the recent bars of each (ticker, interval), so a new bar's features are computed
exactly as the batch job computes them (same code: the reference engine).

Windows never cross sessions, so a bar's features need at most ``spec.max_lookback`` bars of its own
session: that is all the state keeps, across a session's end (the previous session's last bar gives the next
session's overnight gap). The gap of a series' newest session is kept beside its bars (its first bar leaves
the window long before the session ends): ``gaps``, one (session day, gap) per series, stored with the bars,
and so are the totals the time-of-day volume norm needs (``volume``: per series, day and slice of the session,
the summed volume and bar count of the last ``VOLUME_NORM_DAYS`` days and the current one).

Out-of-order and duplicate bars are refused with a reason, and so
is a bar implausibly far ahead of its ticker's recent bars (``implausible_time``): it does not advance the
state, so one bar stamped in the future cannot make every later real bar of its ticker ``out_of_order``.
A real jump (a ticker back after a long halt, a replay that skips months) is recognised when
``confirm_ahead`` consecutive far-ahead bars agree with each other: the next one is admitted (the refused
ones are in the DLQ with their reason, for replay).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hft.data.calendar import exchange_days, minutes_since_open
from hft.features.definitions import CONTEXT_MAX_LAG_BARS, CONTEXT_TRAIL_BARS, VOLUME_NORM_DAYS, FeatureSpec
from hft.features.reference import context_arrays, feature_arrays, group_positions, norms_from_slices, time_bucket
from hft.streaming.messages import BarMessage

Key = tuple[str, str]  # (ticker, interval)
#: A series' newest session (its day number) and its overnight gap (see :mod:`hft.features.definitions`).
SessionGap = tuple[int, float]
#: A series' volume totals: day number -> slice of the session -> [summed volume, bars].
VolumeDays = dict[int, dict[int, list[float]]]


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
        "volume": np.array([b.volume for b in rows], dtype=np.float64),
    })


@dataclass
class FeatureState:
    """Recent bars per (ticker, interval); :meth:`admit` then :meth:`features` per micro-batch."""

    spec: FeatureSpec = field(default_factory=FeatureSpec)
    bars: dict[Key, list[BarMessage]] = field(default_factory=dict)
    #: A bar more than this ahead of its ticker's newest bar (or, for a ticker not seen yet, of the newest
    #: bar of any ticker) is implausible: longer than any market closure (4-day weekends, holidays).
    max_ahead_ms: int = 10 * 86_400_000
    #: Consecutive, mutually consistent far-ahead bars that confirm a real jump.
    confirm_ahead: int = 3
    #: Per series, the times of the far-ahead bars refused in a row (soft state: not persisted).
    ahead: dict[Key, list[int]] = field(default_factory=dict)
    #: Per series, the overnight gap of its newest session (persisted with the bars).
    gaps: dict[Key, SessionGap] = field(default_factory=dict)
    #: Per series, the volume totals of its recent sessions (persisted with the bars).
    volume: dict[Key, VolumeDays] = field(default_factory=dict)
    #: Per series, the days of ``volume`` changed since the last commit took them (:meth:`volume_to_store`).
    volume_changed: dict[Key, set[int]] = field(default_factory=dict)
    #: (series, day, slice) -> the norm's (summed volume, bars): fixed once the day has begun (soft state).
    _norms: dict[tuple[Key, int, int], tuple[float, float]] = field(default_factory=dict, repr=False)

    #: Feature rows per model input: 1 for ``mlp``, ``lookback`` for ``conv1d`` (the window of the last
    #: ``window`` bars of the same ticker and session, as in training). The state keeps enough bars for the
    #: features of each of them.
    window: int = 1

    @property
    def keep(self) -> int:
        """Bars kept per series: a feature row's history and the window's rows before it."""
        return self.spec.max_lookback + self.window - 1

    @property
    def context_keep(self) -> int:
        """Bars kept of a context ticker's series (the index's): its features are computed at the bars the others
        read, up to ``CONTEXT_MAX_LAG_BARS`` before a bar that trails it by up to ``CONTEXT_TRAIL_BARS``."""
        return self.keep + CONTEXT_MAX_LAG_BARS + CONTEXT_TRAIL_BARS

    def keep_for(self, key: Key) -> int:
        return self.context_keep if self.spec.is_context(key[0]) else self.keep

    def series_needed(self, bars: Iterable[BarMessage]) -> list[Key]:
        """The series the features of ``bars`` read: their own, then the market context's (the index ETF's and
        their sectors' of the same interval) that are not among them."""
        own = list(dict.fromkeys((b.ticker, b.interval) for b in bars))
        context: dict[Key, None] = {}
        for ctxs in self.spec.context_tickers([t for t, _ in own]).values():
            context.update(((ctx, interval), None) for ctx, (_, interval) in zip(ctxs, own) if ctx is not None)
        return own + [key for key in context if key not in set(own)]

    def load(self, key: Key, history: Iterable[BarMessage], gap: SessionGap | None = None,
             volume: VolumeDays | None = None) -> None:
        self.bars[key] = sorted(history, key=lambda b: b.ts_ms)[-self.keep_for(key) :]
        if gap is not None:
            self.gaps[key] = (int(gap[0]), float(gap[1]))
        if volume:
            self.volume[key] = {int(d): {int(b): [float(s), float(n)] for b, (s, n) in slices.items()}
                                for d, slices in volume.items()}

    def last_ts(self, key: Key) -> int | None:
        history = self.bars.get(key)
        return history[-1].ts_ms if history else None

    def admit(self, bars: list[BarMessage]) -> tuple[list[BarMessage], list[tuple[BarMessage, str, str]]]:
        """Split a batch (in arrival order) into accepted bars and refused ones with (reason, detail):
        ``duplicate`` (same ticker and bar time seen before), ``out_of_order`` (older than the latest) or
        ``implausible_time`` (too far ahead, see the class)."""
        accepted: list[BarMessage] = []
        refused: list[tuple[BarMessage, str, str]] = []
        latest: dict[Key, int | None] = {}
        seen: set[tuple[str, str, int]] = set()
        market = max((h[-1].ts_ms for h in self.bars.values() if h), default=None)  # newest bar of any series
        for bar in bars:
            key = (bar.ticker, bar.interval)
            if key not in latest:
                latest[key] = self.last_ts(key)
                seen.update((bar.ticker, bar.interval, b.ts_ms) for b in self.bars.get(key, []))
            ident = (bar.ticker, bar.interval, bar.ts_ms)
            reference = latest[key] if latest[key] is not None else market
            if ident in seen:
                refused.append((bar, "duplicate", f"{bar.ticker} {bar.interval} bar at {bar.ts.isoformat()} already seen"))
            elif (last := latest[key]) is not None and bar.ts_ms < last:
                refused.append((bar, "out_of_order", f"{bar.ticker} bar at {bar.ts.isoformat()} is older than the latest"))
            elif reference is not None and bar.ts_ms - reference > self.max_ahead_ms and not self._confirmed(key, bar):
                whose = "its ticker's newest bar" if latest[key] is not None else "the newest bar of any ticker"
                refused.append((bar, "implausible_time", f"{bar.ticker} bar at {bar.ts.isoformat()} is "
                                f"{(bar.ts_ms - reference) / 86_400_000:.1f} days ahead of {whose}"))
            else:
                self.ahead.pop(key, None)
                accepted.append(bar)
                seen.add(ident)
                latest[key] = bar.ts_ms
                market = bar.ts_ms if market is None else max(market, bar.ts_ms)
        return accepted, refused

    def _confirmed(self, key: Key, bar: BarMessage) -> bool:
        """Whether ``bar`` follows ``confirm_ahead`` far-ahead bars of its series that were refused in a row,
        each newer than the one before and within ``max_ahead_ms`` of it; else it joins (or restarts) them."""
        run = self.ahead.setdefault(key, [])
        if run and not 0 < bar.ts_ms - run[-1] <= self.max_ahead_ms:
            run.clear()
        if len(run) >= self.confirm_ahead:
            return True
        run.append(bar.ts_ms)
        return False

    def features(self, new: list[BarMessage]) -> pd.DataFrame:
        """Features of ``new`` (admitted) bars, computed over the state plus the new bars, then the state
        is advanced. Columns ticker, interval, ts, close and the features; rows in the order of ``new``; a
        feature is NaN where its window is not full.

        Same formulas as the batch job (:func:`hft.features.reference.feature_arrays`), fed straight from
        the bars: each touched series' history followed by its new bars, already in time order."""
        return self.features_and_windows(new, [])[0]

    def features_and_windows(self, new: list[BarMessage], names: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
        """:meth:`features`, and for each new bar the features ``names`` of the last :attr:`window` bars of
        its ticker and session, oldest first (``(len(new), window, len(names))``; NaN where the session has
        fewer bars): a ``conv1d`` model's input."""
        columns = ["ticker", "interval", "ts", "close", *self.spec.feature_names()]
        if not new:
            frame = pd.DataFrame({c: pd.Series(dtype=object if c in ("ticker", "interval") else np.float64)
                                  for c in columns}).astype({"ts": "datetime64[us, UTC]"})
            return frame, np.empty((0, self.window, len(names)))
        series: dict[Key, list[int]] = {}
        for i, bar in enumerate(new):
            series.setdefault((bar.ticker, bar.interval), []).append(i)
        touched = len(series)
        for key in self.series_needed(new)[touched:]:  # context series without new bars: their stored ones
            if self.bars.get(key):
                series[key] = []
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
        series_id = np.asarray(key_id, np.int64)
        group = series_id << np.int64(32) | (day - day.min())  # (series, session) ids
        prices = np.array([(b.open, b.high, b.low, b.close, b.volume) for b in rows], dtype=np.float64)
        o, h, lo, c, v = prices.T
        pos = group_positions(group)
        minutes = minutes_since_open(ts)
        keys = list(series)
        own = keys[:touched]  # the series of the new bars (the others only give context)
        # A call that raises leaves the state as it found it: the caller retries bar by bar (a bar that fails
        # alone goes to the DLQ and must not count in the volume totals, nor any bar twice).
        gaps_before = {key: self.gaps.get(key) for key in own}
        undo: dict[tuple[Key, int, int], list[float] | None] = {}
        try:
            norms = self._volume_norms(keys, new, series_id, day[at], day, time_bucket(minutes), at, undo,
                                       np.isin(group, group[at]))
            out = feature_arrays(o, h, lo, c, v, pos, minutes, self.spec, series_id, day, norms)
            self._session_gaps(out["overnight_gap"], own, series_id, day, pos, at)
            out.update(context_arrays(series_id, keys, ts.as_unit("ns").asi8, day, out, self.spec))
            frame = pd.DataFrame({
                "ticker": [b.ticker for b in new], "interval": [b.interval for b in new],
                "ts": ts[at].as_unit("us"), "close": prices[at, 3],
                **{name: values[at] for name, values in out.items()},
            })
            windows = self._windows(out, names, group, at)
        except BaseException:
            self._undo(gaps_before, undo)
            raise
        self._advance(new)
        self._forget_old_volume(own, began=any(total is None for total in undo.values()))
        return frame, windows

    def _undo(self, gaps: dict[Key, SessionGap | None], undo: dict[tuple[Key, int, int], list[float] | None]) -> None:
        """Put back the session gaps and volume totals a failed call changed (the norms' cache, soft, is emptied)."""
        for key, gap in gaps.items():
            if gap is None:
                self.gaps.pop(key, None)
            else:
                self.gaps[key] = gap
        for (key, d, b), before in undo.items():
            slices = self.volume[key][d]
            if before is None:
                del slices[b]
                if not slices:
                    del self.volume[key][d]
            else:
                slices[b] = before
        self._norms = {}

    def _session_gaps(self, gap: np.ndarray, keys: list[Key], series_id: np.ndarray, day: np.ndarray,
                      pos: np.ndarray, at: np.ndarray) -> None:
        """Correct ``gap`` (computed from the rows: each series' stored bars, then its new bars at ``at``) where
        the rows no longer hold a session's first bar, then remember each series' newest session gap.

        A session already under way takes its stored gap. One that starts in this batch (its first row is a new
        bar) keeps the computed one: its previous row is the series' last stored bar. Any other (a state stored
        before gaps were kept) has none known: 0."""
        is_new = np.zeros(len(gap), bool)
        is_new[at] = True
        first = np.arange(len(gap)) - pos
        for k, key in enumerate(keys):
            rows = np.flatnonzero(series_id == k)
            known = self.gaps.get(key)
            stored_day = known[0] if known is not None else None
            gap[rows[~is_new[first[rows]] & (day[rows] != stored_day)]] = 0.0
            if known is not None:
                gap[rows[day[rows] == stored_day]] = known[1]
            newest = rows[-1]
            self.gaps[key] = (int(day[newest]), float(gap[newest]))

    def _volume_norms(self, keys: list[Key], new: list[BarMessage], series_id: np.ndarray, new_days: np.ndarray,
                      day: np.ndarray, bucket: np.ndarray, at: np.ndarray,
                      undo: dict[tuple[Key, int, int], list[float] | None],
                      read: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add the ``new`` bars to their series' volume totals (each total's value before, None for a new one,
        in ``undo``), then the time-of-day norm of the rows ``read`` marks (those of a new bar's session: the
        only ones a feature or a window reads; the stored bars of earlier sessions get 0).

        A norm reads only days before its own, which take no more bars once a later one has begun (an older bar
        is refused), so each (series, day, slice) is computed once, from the totals, and kept in :attr:`_norms`
        until its series' next day: a batch costs a lookup per distinct (series, day, slice) of its rows."""
        for bar, d, b in zip(new, new_days, bucket[at]):
            key = (bar.ticker, bar.interval)
            slices = self.volume.setdefault(key, {}).setdefault(int(d), {})
            if (key, int(d), int(b)) not in undo:
                undo[(key, int(d), int(b))] = list(slices[int(b)]) if int(b) in slices else None
            total = slices.setdefault(int(b), [0.0, 0.0])
            total[0] += bar.volume
            total[1] += 1.0
            self.volume_changed.setdefault(key, set()).add(int(d))
        combos, inverse = np.unique(np.column_stack([series_id, day, bucket])[read], axis=0, return_inverse=True)
        wanted = [(keys[k], int(d), int(b)) for k, d, b in combos]
        missing = [w for w in wanted if w not in self._norms]
        if missing:
            involved = {(key, b) for key, _, b in missing}
            series_of = {key: k for k, key in enumerate(dict.fromkeys(key for key, _ in involved))}
            entries = sorted((series_of[key], b, d, *self.volume[key][d][b]) for key, b in involved
                             for d in self.volume.get(key, {}) if b in self.volume[key][d])
            slices = pd.MultiIndex.from_tuples([e[:3] for e in entries]) if entries else \
                pd.MultiIndex.from_arrays([[], [], []])
            totals = np.array([e[3:] for e in entries], np.float64).reshape(-1, 2)
            q = np.array([(series_of[key], b, d) for key, d, b in missing], np.int64).reshape(-1, 3)
            sums, counts = norms_from_slices(slices, totals[:, 0], totals[:, 1], q[:, 0], q[:, 1], q[:, 2])
            self._norms.update(((key, d, b), (float(s_), float(n_))) for (key, d, b), s_, n_ in zip(missing, sums, counts))
        values = np.zeros((len(day), 2))
        values[read] = np.array([self._norms[w] for w in wanted], np.float64).reshape(-1, 2)[inverse.reshape(-1)]
        return values[:, 0], values[:, 1]

    def _forget_old_volume(self, keys: list[Key], began: bool) -> None:
        """Drop the volume totals no later bar can read, and (``began``: a new day or slice started) the
        cached norms of days before their series' newest."""
        newest = {key: max(self.volume[key]) for key in keys if self.volume.get(key)}
        for key, last in newest.items():
            days = self.volume[key]
            for d in [d for d in days if d < last - VOLUME_NORM_DAYS]:
                del days[d]
        if began:
            self._norms = {w: v for w, v in self._norms.items() if w[1] >= newest.get(w[0], w[1])}

    def volume_to_store(self, key: Key) -> tuple[int, VolumeDays]:
        """What a commit writes of ``key``'s volume totals: the oldest day kept, and the days changed since the
        last call for it (every :meth:`features` call since, bar-by-bar retries included)."""
        days = self.volume.get(key, {})
        return min(days, default=0), {d: days[d] for d in self.volume_changed.pop(key, ()) if d in days}

    def _windows(self, out: dict[str, np.ndarray], names: list[str], group: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Rows ``at - window + 1 .. at`` of the features ``names``, NaN where they leave ``at``'s group."""
        w = self.window
        if not names:  # an mlp: no windows to build
            return np.empty((len(at), w, 0))
        table = np.column_stack([out[n] for n in names])
        idx = at[:, None] + np.arange(1 - w, 1)[None, :]                  # (n, w) rows, oldest first
        inside = (idx >= 0) & (group[np.maximum(idx, 0)] == group[at][:, None])
        windows = table[np.maximum(idx, 0)]
        windows[~inside] = np.nan
        return windows

    def _advance(self, new: list[BarMessage]) -> None:
        """Append the batch to the state, keeping each series' newest :meth:`keep_for` bars (of any session:
        windows stop at the session's start by themselves)."""
        for bar in new:
            history = self.bars.setdefault((bar.ticker, bar.interval), [])
            history.append(bar)
        for key in {(bar.ticker, bar.interval) for bar in new}:
            del self.bars[key][: -self.keep_for(key)]
