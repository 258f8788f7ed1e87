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

Against the market (the only features that read bars of another ticker). Roles: ``mkt``, the index ETF
``market_ticker`` (SPY) for every ticker; ``sec``, the ticker's sector ETF from ``sectors`` (only when a
sector map is configured). With k1, K the shortest and longest of ``return_lags`` and W the longest of
``vol_windows``::

    {role}_ret_k1, {role}_ret_K, {role}_rv_W
                   = the context ticker's own ret_k1, ret_K, rv_W at its bar C* of the same interval and session:
                     the newest one stamped at t - j * interval for j = 0 .. ``CONTEXT_MAX_LAG_BARS`` (its bar
                     of the same minute when there is one); NaN where C*'s own window is not full
    {role}_rel_K   = ret_K - {role}_ret_K                               the ticker's return relative to it

    All four are 0 when there is no such bar C* (the context ticker is not in the data, has no bar in those
    minutes, or the ticker has no sector). A streaming job sees only what had arrived: C* is looked up among
    the bars that arrived up to the end of the micro-batch that brought the bar (the batch job's value when
    the context's bar of the minute came no later than the ticker's; an older one of the last
    ``CONTEXT_MAX_LAG_BARS`` when it is late). The context ticker's own rows read themselves (rel = 0).

Label, ``horizon_minutes`` ahead (a whole number of bars for 1m and 5m bars)::

    fwd_ret = ln(C_{t+h} / C_t),  label = 1 if C_{t+h} > C_t else 0

where *t+h* is the bar of the same ticker stamped exactly *h* minutes later; a bar without one (end of
session, missing bar) has no label and is dropped from the feature table.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from hft.errors import UserError
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
#: The index ETF every ticker is compared with (``FeatureSpec.market_ticker``'s default).
MARKET_TICKER = "SPY"
#: How many bars back a context ticker's bar may be stamped and still stand for the market at a bar's time.
CONTEXT_MAX_LAG_BARS = 5
#: How far (bars) a ticker's stream may trail its context tickers' and still read their bars: a streaming
#: state keeps this many more of a context ticker's bars (a backlog's partitions advance unevenly).
CONTEXT_TRAIL_BARS = 60
#: The feature-name prefixes of the market context's roles.
CONTEXT_ROLES: tuple[str, ...] = ("mkt", "sec")

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


class FeatureConfigError(UserError, ValueError):
    """The environment's feature settings (``HFT_MARKET_TICKER``, ``HFT_SECTORS``) are not valid."""


@dataclass(frozen=True)
class FeatureSpec:
    """Which lags and windows to compute (counts of bars) and the label horizon (minutes)."""

    return_lags: tuple[int, ...] = (1, 5, 15)
    vol_windows: tuple[int, ...] = (5, 15, 30)
    volume_window: int = 30
    horizon_minutes: int = 5
    #: The index ETF of the ``mkt`` context features (None: no market context).
    market_ticker: str | None = MARKET_TICKER
    #: (ticker, sector ETF) pairs: the ``sec`` context features exist only when this is not empty.
    sectors: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.return_lags or min(self.return_lags) < 1:
            raise ValueError("return_lags must be positive bar counts")
        if not self.vol_windows or min(self.vol_windows) < 2:
            raise ValueError("vol_windows must be at least 2 bars")
        if self.volume_window < 2:
            raise ValueError("volume_window must be at least 2 bars")
        if self.horizon_minutes < 1:
            raise ValueError("horizon_minutes must be positive")
        tickers = [t for t, _ in self.sectors]
        if len(set(tickers)) != len(tickers):
            raise ValueError("sectors maps a ticker twice")
        if any(not t or not etf or t != t.upper() or etf != etf.upper() for t, etf in self.sectors) or (
                self.market_ticker is not None and self.market_ticker != self.market_ticker.upper()):
            raise ValueError("market_ticker and sectors must be upper-case ticker symbols")

    @classmethod
    def from_env(cls, **overrides) -> "FeatureSpec":
        """The deployment's spec: the market context from ``HFT_MARKET_TICKER`` (a ticker, or ``none`` for no
        market context; unset: ``MARKET_TICKER``) and ``HFT_SECTORS`` (``TICKER:ETF`` pairs, comma-separated:
        ``AAPL:XLK,JPM:XLF``; unset: no sector context), then ``overrides``. Every job that computes features
        (the feature job, training's feature list, both streaming engines, the backtest) builds its spec here,
        once, and passes it down: a model trained with sector features is served with them. ValueError names
        the variable and the bad entry (:class:`FeatureConfigError`)."""
        from hft.config import env_value, parse_tickers

        market = env_value("HFT_MARKET_TICKER", MARKET_TICKER).strip()
        if "," in market:
            raise FeatureConfigError(f"HFT_MARKET_TICKER: one ticker or 'none', got {market[:60]!r}")
        pairs = []
        try:
            market_ticker = None if market.lower() == "none" else parse_tickers(market, "HFT_MARKET_TICKER")[0]
            for entry in (e.strip() for e in env_value("HFT_SECTORS", "").split(",")):
                if not entry:
                    continue
                ticker, sep, etf = entry.partition(":")
                if not sep or ":" in etf:
                    raise ValueError(f"HFT_SECTORS: expected TICKER:ETF pairs separated by commas, got {entry[:60]!r}")
                pairs.append((parse_tickers(ticker, "HFT_SECTORS")[0], parse_tickers(etf, "HFT_SECTORS")[0]))
            spec = cls(market_ticker=market_ticker, sectors=tuple(pairs))
        except ValueError as exc:
            message = str(exc) if str(exc).startswith("HFT_") else f"HFT_MARKET_TICKER / HFT_SECTORS: {exc}"
            raise FeatureConfigError(message) from None
        return dataclasses.replace(spec, **overrides)

    def context_tickers(self, tickers) -> dict[str, np.ndarray]:
        """Per context role in use (``mkt``, ``sec``): the context ticker of each of ``tickers`` (an array of
        ticker symbols; None where it has none)."""
        tickers = np.asarray(tickers, dtype=object)
        roles: dict[str, np.ndarray] = {}
        if self.market_ticker is not None:
            roles["mkt"] = np.full(len(tickers), self.market_ticker, dtype=object)
        if self.sectors:
            sector = dict(self.sectors)
            roles["sec"] = np.array([sector.get(t) for t in tickers], dtype=object)
        return roles

    def with_context(self, tickers):
        """``tickers`` and the context tickers their features read (the market's, their sectors'), sorted; a job
        computing features of some tickers reads these bars (and writes only its own tickers' rows)."""
        sector = dict(self.sectors)
        needed = {*tickers, *(sector[t] for t in tickers if t in sector)}
        if self.market_ticker is not None:
            needed.add(self.market_ticker)
        return sorted(needed)

    @property
    def index_tickers(self) -> tuple[str, ...]:
        """Every ticker whose bars other tickers' features read (the index ETF, the sector ETFs), sorted."""
        return tuple(sorted({*([self.market_ticker] if self.market_ticker else []), *(e for _, e in self.sectors)}))

    def is_context(self, ticker: str) -> bool:
        """Whether other tickers' features read ``ticker``'s bars (the index ETF, a sector ETF)."""
        return ticker in self.index_tickers

    def context_names(self) -> dict[str, tuple[str, str, str, str]]:
        """Per context role in use: its features' names (ret_k1, ret_K, rv_W, rel_K)."""
        k1, k, w = min(self.return_lags), max(self.return_lags), max(self.vol_windows)
        roles = (["mkt"] if self.market_ticker is not None else []) + (["sec"] if self.sectors else [])
        return {r: (f"{r}_ret_{k1}", f"{r}_ret_{k}", f"{r}_rv_{w}", f"{r}_rel_{k}") for r in roles}

    def context_sources(self) -> tuple[str, str, str]:
        """The context ticker's own features its role's first three features copy (ret_k1, ret_K, rv_W)."""
        return f"ret_{min(self.return_lags)}", f"ret_{max(self.return_lags)}", f"rv_{max(self.vol_windows)}"

    def feature_names(self) -> list[str]:
        names = [f"ret_{k}" for k in self.return_lags]
        for stem in ("rv", "parkinson", "garman_klass", "rogers_satchell", "yang_zhang", "atr"):
            names += [f"{stem}_{w}" for w in self.vol_windows]
        return names + ["hl_range", "volume_z", "tod_sin", "tod_cos", "bar_pos", f"range_pos_{max(self.vol_windows)}",
                        f"vwap_dist_{self.volume_window}", "overnight_gap", "volume_tod",
                        *(name for names in self.context_names().values() for name in names)]

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
