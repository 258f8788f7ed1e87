"""What the features are. The formulas themselves are written twice on purpose, once per engine
(:mod:`hft.features.reference` for numpy/pandas, :mod:`hft.features.spark` for Spark), and a test proves
the two agree to 1e-9 relative error; nothing outside ``hft.features`` computes a feature.

Conventions (both engines):

* Bars are grouped by **(ticker, interval, session date)**, the session date being the New York date of
  the bar. Windows count **bars** (rows) inside one group and never reach into the previous session, so an
  overnight gap never enters an intraday volatility. A missing bar simply is not a row.
* A windowed value at bar *t* is defined only when all *w* of its inputs exist inside the group;
  otherwise it is null (NaN in pandas). Early bars of each session therefore have null features.
* No feature at *t* reads a bar after *t*. Only the label looks ahead.

Per-bar inputs (``C_p`` = previous close in the same session)::

    r1  = ln(C / C_p)                  gap = ln(O / C_p)              hl = ln(H / L)
    co  = ln(C / O)                    rs  = ln(H/C) ln(H/O) + ln(L/C) ln(L/O)
    gk  = 0.5 hl^2 - (2 ln 2 - 1) co^2 tr  = max(H, C_p) - min(L, C_p)   (H - L on a session's first bar)

Features (w in ``vol_windows``, k in ``return_lags``)::

    ret_k          = ln(C_t / C_{t-k})
    rv_w           = sqrt(sum of r1^2 over w bars)                                  realized volatility
    parkinson_w    = sqrt(sum(hl^2) / (4 ln 2 * w))
    garman_klass_w = sqrt(max(mean(gk), 0))
    rogers_satchell_w = sqrt(max(mean(rs), 0))
    yang_zhang_w   = sqrt(max(var(gap) + K var(co) + (1 - K) mean(rs), 0)),  K = 0.34 / (1.34 + (w+1)/(w-1))
                     (sample variances; the bar-to-bar open gap plays the overnight return's role)
    atr_w          = mean(tr over w bars) / C_t                                     ATR as a fraction of price
    hl_range       = hl
    volume_z       = (V_t - mean(V)) / std(V) over ``volume_window`` bars, 0 when std is 0
    tod_sin, tod_cos = sin, cos of 2 pi m / 390, m = minutes since 09:30 New York time

Where the bar sits (W = the longest of ``vol_windows``, wv = ``volume_window``)::

    bar_pos        = (C - L) / (H - L), 0.5 when H = L                  the close in its own bar's range
    range_pos_W    = (C - min L) / (max H - min L) over W bars, 0.5 when max H = min L
                                                                         the close in the window's range
    vwap_dist_wv   = ln(C / VWAP), VWAP = sum(P V) / sum(V) over wv bars, P = (H + L + C) / 3;
                     0 when the window traded nothing (sum V = 0)        distance from the rolling VWAP

Against the series' earlier sessions (the only features that read bars of an earlier session)::

    volume_tod     = ln((V + 1) / (N + 1)), N = the mean volume per bar of the series' bars in the same
                     ``VOLUME_BUCKET_MINUTES`` slice of the session (b = floor(m / 30), m = minutes since
                     09:30 New York time) on its sessions of the ``VOLUME_NORM_DAYS`` calendar days before
                     this one; 0 when there are none              volume against its time-of-day norm

    overnight_gap  = ln(O_first / C_last), O_first = the open of the session's first bar, C_last = the close
                     of the series' last bar of its previous session, when that session is at most
                     ``GAP_MAX_DAYS`` calendar days earlier; else 0, no gap known (the series' first
                     session, a ticker back from a halt: its bars are still predicted); the same value on
                     every bar of the session

Label, ``horizon_minutes`` ahead (a whole number of bars for 1m and 5m bars)::

    fwd_ret = ln(C_{t+h} / C_t),  label = 1 if C_{t+h} > C_t else 0

where *t+h* is the bar of the same ticker stamped exactly *h* minutes later; a bar without one (end of
session, missing bar) has no label and is dropped from the feature table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hft.schemas import Interval

LN2 = math.log(2.0)
GK_CO_WEIGHT = 2.0 * LN2 - 1.0
SESSION_MINUTES = 390.0
#: The overnight gap reaches back at most this many calendar days (the longest US market closure since 1933,
#: 2001-09-11 to 09-17, is 7 days), so a job computing sessions from a date reads that much before it.
GAP_MAX_DAYS = 7
#: The time-of-day volume norm: slices of the session (minutes) and how many calendar days back it reaches.
VOLUME_BUCKET_MINUTES = 30
VOLUME_NORM_DAYS = 14
#: Calendar days before its first session that a job computing features must read (the longest reach back).
CONTEXT_DAYS = max(GAP_MAX_DAYS, VOLUME_NORM_DAYS)

#: Features with one value per (ticker, session): a session, not a bar, is one observation of them.
SESSION_FEATURES: tuple[str, ...] = ("overnight_gap",)

#: Columns of the feature table besides the features themselves.
KEY_COLUMNS: tuple[str, ...] = ("ticker", "ts", "date", "interval")
PASSTHROUGH_COLUMNS: tuple[str, ...] = ("close", "volume")
LABEL_COLUMNS: tuple[str, ...] = ("fwd_ret", "label")


def yang_zhang_k(window: int) -> float:
    return 0.34 / (1.34 + (window + 1) / (window - 1))


@dataclass(frozen=True)
class FeatureSpec:
    """Which lags and windows to compute (counts of bars) and the label horizon (minutes)."""

    return_lags: tuple[int, ...] = (1, 5, 15)
    vol_windows: tuple[int, ...] = (5, 15, 30)
    volume_window: int = 30
    horizon_minutes: int = 5

    def __post_init__(self) -> None:
        if not self.return_lags or min(self.return_lags) < 1:
            raise ValueError("return_lags must be positive bar counts")
        if not self.vol_windows or min(self.vol_windows) < 2:
            raise ValueError("vol_windows must be at least 2 bars")
        if self.volume_window < 2:
            raise ValueError("volume_window must be at least 2 bars")
        if self.horizon_minutes < 1:
            raise ValueError("horizon_minutes must be positive")

    def feature_names(self) -> list[str]:
        names = [f"ret_{k}" for k in self.return_lags]
        for stem in ("rv", "parkinson", "garman_klass", "rogers_satchell", "yang_zhang", "atr"):
            names += [f"{stem}_{w}" for w in self.vol_windows]
        return names + ["hl_range", "volume_z", "tod_sin", "tod_cos", "bar_pos", f"range_pos_{max(self.vol_windows)}",
                        f"vwap_dist_{self.volume_window}", "overnight_gap", "volume_tod"]

    def output_columns(self) -> list[str]:
        return [*KEY_COLUMNS, *PASSTHROUGH_COLUMNS, *self.feature_names(), *LABEL_COLUMNS]

    @property
    def volatility_feature(self) -> str:
        """The feature the executor sizes positions with: realized volatility over the longest window."""
        return f"rv_{max(self.vol_windows)}"

    def per_bar_volatility(self, rv):
        """Per-bar volatility (a fraction) from :attr:`volatility_feature` values: ``rv_w / sqrt(w)``."""
        return rv / math.sqrt(max(self.vol_windows))

    @property
    def max_lookback(self) -> int:
        """Bars of history (current bar included) needed for every feature of a bar to exist."""
        return max(max(self.return_lags) + 1, max(self.vol_windows) + 1, self.volume_window)

    def horizon_bars(self, interval: "Interval | str") -> int:
        """The label horizon as a whole number of bars of ``interval``."""
        interval = Interval.parse(interval)
        if not interval.intraday:
            raise ValueError("features and labels are defined for intraday bars (1m, 5m), not daily bars")
        if self.horizon_minutes % interval.minutes:
            raise ValueError(
                f"horizon of {self.horizon_minutes} minutes is not a whole number of {interval.value} bars"
            )
        return self.horizon_minutes // interval.minutes
