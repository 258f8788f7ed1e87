"""Small, deterministic bar sets for tests (a plain random walk, not the synthetic market)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hft.data.calendar import session_bounds, trading_days


def make_bars(
    tickers=("AAA", "BBB"),
    start="2024-03-07",
    end="2024-03-12",
    interval="1m",
    seed=0,
) -> pd.DataFrame:
    """A plain random walk of consistent OHLCV bars over every regular session in [start, end]."""
    rng = np.random.default_rng(seed)
    step = pd.Timedelta(interval.replace("m", "min"))
    frames = []
    for i, ticker in enumerate(tickers):
        price = 50.0 + 40 * i
        for day in trading_days(pd.Timestamp(start).date(), pd.Timestamp(end).date()):
            open_, close_ = session_bounds(day)
            ts = pd.date_range(open_, close_ - step, freq=step)
            r = rng.normal(0, 0.001, len(ts))
            c = price * np.exp(np.cumsum(r))
            o = np.r_[price * np.exp(rng.normal(0, 0.003)), c[:-1]]
            h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, 0.0005, len(ts))))
            lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, 0.0005, len(ts))))
            v = rng.integers(0, 10_000, len(ts))
            v[rng.random(len(ts)) < 0.05] = 0  # flat, zero-volume bars happen
            frames.append(
                pd.DataFrame(
                    {"ticker": ticker, "ts": ts, "interval": interval, "open": o.round(2), "high": h.round(2) + 0.01,
                     "low": lo.round(2) - 0.01, "close": c.round(2), "volume": v}
                )
            )
            price = c[-1]
    bars = pd.concat(frames, ignore_index=True)
    bars["high"] = bars[["open", "high", "close"]].max(axis=1)
    bars["low"] = bars[["open", "low", "close"]].min(axis=1)
    return bars
