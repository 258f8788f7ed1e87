"""The benchmark's bars: warm-up sessions and one slice per phase, with the bars that must get a prediction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta


@dataclass
class Phase:
    label: str
    rate: float  # offered bars/s; 0: unpaced
    msgs: list
    expected: set  # (ticker, bar ts ms) that must get a prediction


def make_data(tickers: int, warm_days: int, sizes: list[int], prefix: str = "T"):
    """Warm-up bars (whole sessions) then one contiguous slice of later bars per phase size, for ``tickers``
    tickers named ``<prefix>000``...; returns (names, warm-up bars, slices, the (ticker, ts) that get a
    prediction)."""
    import pandas as pd

    from hft.features.definitions import FeatureSpec
    from hft.features.reference import compute_features
    from hft.streaming import collectors
    from hft.streaming.state import bars_frame

    names = [f"{prefix}{i:03d}" for i in range(tickers)]
    per_day = tickers * 390
    need = warm_days * per_day + sum(sizes)
    days = math.ceil(need / per_day) + 1
    start = date(2024, 3, 1)
    msgs: list = []
    while len(msgs) < need:
        end = start + timedelta(days=int(days * 7 / 5) + 6)
        msgs = collectors.synthetic(names, start, end)
        days *= 2
    msgs = msgs[:need]
    feats = compute_features(bars_frame(msgs), labelled_only=False).dropna(subset=FeatureSpec().feature_names())
    ts_ms = pd.DatetimeIndex(feats["ts"]).as_unit("ms").asi8
    ready = set(zip(feats["ticker"], (int(x) for x in ts_ms)))
    warm = msgs[: warm_days * per_day]
    chunks, i = [], len(warm)
    for size in sizes:
        chunks.append(msgs[i: i + size])
        i += size
    return names, warm, chunks, ready
