"""Seeded synthetic market: realistic intraday bars with a weak, known predictable component.

The generator is meant for tests, demos and model sanity checks: it has the stylised facts of real
intraday equity data, and a predictable component of known strength, so a model that learns nothing
from it (or learns "too much" from the unpredictable ``predictability=0`` market) is broken.

Model
-----
For every ticker, bars of every NYSE regular session in the requested range are simulated at the
requested interval (each interval is its own simulation: 5m bars are *not* aggregates of 1m bars).
Bar ``t`` of ticker ``i`` has the log return (bar close over bar open)::

    r_t   = sigma_t * x_t
    x_t   = -p * z_t + eps_t + J_t / sigma_t                 (standardized return)
    z_t   = (x_{t-1} + x_{t-2} + x_{t-3} + x_{t-4} + x_{t-5}) / sqrt(5)

so the expected 1-bar log return is ``E[r_t | past] = -p * sigma_t * z_t`` with ``p = predictability``:
``z_t`` is the standardized log return over the previous 5 bars of the same ticker (each bar's return
divided by its own volatility, summed, divided by sqrt(5)). It mean-reverts: after a 5-bar rise the next
bars drift down. The windows run across session boundaries; the overnight gap is not part of ``x``.
``p = 0`` gives no predictable drift; ``p`` must lie in [0, 1] (the recursion is stable there).

A **regime change** (``regime_change``, a session date, with ``predictability_after``) switches ``p`` from that
session's first bar on (the recursion carries on from the bars before it): a negative ``predictability_after``
makes the same drift trend-following (``+|p| z_t``: after a 5-bar rise the next bars drift up), the market a
model trained on the old regime gets backwards. It must lie in (-1/sqrt(5), 1] (stable).

* ``eps_t = sqrt(rho) * f_t + sqrt(1 - rho) * e_{i,t}``: a one-factor model, ``rho = market_beta_corr``, with
  ``f`` (market, shared) and ``e`` (ticker) independent Student-t draws of ``t_dof`` degrees of freedom
  scaled to unit variance (fat tails).
* ``sigma_t = s_bar * u(position in session) * sqrt(h_t)``: ``s_bar`` gives ``annual_vol`` over a 252-day year,
  of which ``overnight_var_share`` is left for the overnight gap; ``u`` is an intraday U-shape (highest at
  open and close, lowest midday, mean 1); ``h_t = (1 - a - b) + a * eps_{t-1}^2 + b * h_{t-1}`` is a GARCH(1,1)
  variance of unit mean (``a = garch_alpha``, ``b = garch_beta``): volatility clustering.
* ``J_t``: with probability ``jump_prob_per_day`` per ticker and session, one bar of the session (uniformly
  drawn) gets a N(0, ``jump_scale``) log-jump. Jumps are idiosyncratic and, being part of ``x``, partly revert.
* The first bar of each session opens at the previous close times ``exp(g)``, ``g`` an overnight return
  with the same one-factor, Student-t structure; later bars open at the previous close.
* High and low are drawn from the exact law of the extremes of a Brownian bridge between the bar's log
  open and log close with the bar's variance, so they are consistent with the path.
* Volume per bar is about ``mean_volume`` per minute of bar, times an intraday U-shape, times a factor
  rising with ``|x_t|`` and with ``sqrt(h_t)``, times log-normal noise: correlated with the absolute return.
* Prices are rounded to cents (open/close first; high/low then widened to contain them), never below 0.01.
  Start prices are log-uniform in ``start_price_range``.

Determinism: the frame is a pure function of (config, tickers, interval, ``[start, end)``). A ticker's path
depends on the config, its own name, the interval, the first trading day and the number of bars of the
trading days in range (the market factor depends on the same, less the name); it does not depend on which
other tickers were requested, so large requests are simulated in groups of tickers to bound memory.
Fetching ``[a, c)`` is not the concatenation of ``[a, b)`` and ``[b, c)``: each request is its own path.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.signal import lfilter, lfiltic

from hft.config import TICKER_PATTERN
from hft.data import calendar
from hft.data.sources.base import BarSource, SourceError
from hft.schemas import Interval, coerce_bars

log = logging.getLogger(__name__)

_TRADING_DAYS_PER_YEAR = 252
_REGULAR_SESSION_MINUTES = 390
_ZSCORE_WINDOW = 5
_VOL_SMILE = 1.5  # intraday vol at open/close is (1 + _VOL_SMILE) times its midday value
_VOLUME_SMILE = 2.0  # same for volume
_VOLUME_NOISE = 0.4  # sd of the log-normal volume noise
_MEAN_ABS_X = 0.8  # about E|x| of a unit-variance innovation; sets the |return| volume factor
_MAX_ABS_X_FOR_VOLUME = 10.0
_MARKET_STREAM = 0x4D4B54  # seed-sequence key of the shared market factor
_MIN_PRICE = 0.01
_MAX_CELLS_PER_CHUNK = 4_000_000  # bars x tickers simulated at once; bounds peak memory


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic market (see the module docstring for the model).

    Attributes:
        seed: master seed; same seed and request give the identical frame.
        predictability: strength ``p`` of the mean-reverting predictable drift ``-p * sigma_t * z_t``, in
            [0, 1]; 0.0 gives an unpredictable market, the default 0.15 is weak but clearly learnable.
        annual_vol: annualised volatility of each ticker (diffusive part, overnight included).
        market_beta_corr: correlation of the innovations of any two tickers (one-factor model), in [0, 1).
        garch_alpha: GARCH(1,1) reaction to the last squared innovation.
        garch_beta: GARCH(1,1) persistence; ``garch_alpha + garch_beta`` must be below 1.
        t_dof: degrees of freedom of the Student-t innovations (> 2; lower is fatter-tailed).
        jump_prob_per_day: chance that a ticker has one jump in a session, in [0, 1].
        jump_scale: standard deviation of a jump's log size.
        start_price_range: (low, high) range of the log-uniform first open price.
        mean_volume: approximate mean volume per minute of bar, in shares.
        overnight_var_share: fraction of the daily variance carried by the overnight gap, in [0, 1).
        regime_change: session date (``date`` or ISO string) from which ``predictability_after`` replaces
            ``predictability``; None: one regime.
        predictability_after: the predictability from ``regime_change`` on; negative is trend-following.
    """

    seed: int = 7
    predictability: float = 0.15
    annual_vol: float = 0.25
    market_beta_corr: float = 0.5
    garch_alpha: float = 0.08
    garch_beta: float = 0.9
    t_dof: float = 4.0
    jump_prob_per_day: float = 0.5
    jump_scale: float = 0.01
    start_price_range: tuple[float, float] = (20.0, 500.0)
    mean_volume: int = 50_000
    overnight_var_share: float = 0.2
    regime_change: date | str | None = None
    predictability_after: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.regime_change, str):
            object.__setattr__(self, "regime_change", date.fromisoformat(self.regime_change))
        checks = [
            (0.0 <= self.predictability <= 1.0, "predictability must be in [0, 1]"),
            (self.annual_vol > 0, "annual_vol must be positive"),
            (0.0 <= self.market_beta_corr < 1.0, "market_beta_corr must be in [0, 1)"),
            (self.garch_alpha >= 0 and self.garch_beta >= 0, "garch_alpha and garch_beta must be >= 0"),
            (self.garch_alpha + self.garch_beta < 1.0, "garch_alpha + garch_beta must be below 1"),
            (self.t_dof > 2, "t_dof must be above 2 (finite variance)"),
            (0.0 <= self.jump_prob_per_day <= 1.0, "jump_prob_per_day must be in [0, 1]"),
            (self.jump_scale >= 0, "jump_scale must be >= 0"),
            (0 < self.start_price_range[0] <= self.start_price_range[1], "start_price_range must be 0 < low <= high"),
            (self.mean_volume > 0, "mean_volume must be positive"),
            (0.0 <= self.overnight_var_share < 1.0, "overnight_var_share must be in [0, 1)"),
            (-1.0 / np.sqrt(_ZSCORE_WINDOW) < self.predictability_after <= 1.0,
             "predictability_after must be in (-1/sqrt(5), 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid SyntheticConfig: {message}")


@dataclass(frozen=True)
class _Grid:
    """Bar layout shared by all tickers: one row per bar, sessions in time order."""

    ts: pd.DatetimeIndex  # bar start, UTC
    position: np.ndarray  # bar midpoint as a fraction of its session, in (0, 1)
    minutes: np.ndarray  # bar length in minutes
    session_starts: np.ndarray  # row of each session's first bar
    session_lengths: np.ndarray  # bars per session


class SyntheticSource(BarSource):
    """Deterministic synthetic bars for any valid ticker (regular NYSE sessions only)."""

    name: ClassVar[str] = "synthetic"

    def __init__(self, config: SyntheticConfig | None = None) -> None:
        self.config = config or SyntheticConfig()

    def fetch(
        self, tickers: Sequence[str], start: datetime, end: datetime, interval: Interval | str
    ) -> pd.DataFrame:
        """Bars of ``tickers`` whose start lies in ``[start, end)`` (naive datetimes are UTC)."""
        names = _check_tickers(tickers)
        lo, hi = _utc(start), _utc(end)
        if lo >= hi:
            raise SourceError(f"synthetic: start {lo.isoformat()} must be before end {hi.isoformat()}")
        try:
            step = Interval.parse(interval)
        except ValueError as exc:
            raise SourceError(f"synthetic: {exc}") from None
        days = calendar.trading_days(_ny_date(lo), _ny_date(hi))
        grid = _build_grid(days, step) if days else None
        keep = (grid.ts >= lo) & (grid.ts < hi) if grid is not None else np.zeros(0, dtype=bool)
        if grid is None or not keep.any():
            raise SourceError(f"synthetic: no NYSE trading session between {lo.isoformat()} and {hi.isoformat()}")
        frames = [
            _to_frame(_simulate(self.config, grid, chunk, step, days[0]), grid, chunk, step, keep)
            for chunk in _chunks(names, max(1, _MAX_CELLS_PER_CHUNK // len(grid.ts)))
        ]
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        log.info("synthetic: %d %s bars for %d ticker(s) from %s to %s", len(frame), step.value, len(names), lo, hi)
        return frame


def _check_tickers(tickers: Sequence[str]) -> list[str]:
    """Sorted unique tickers; SourceError when empty or when one is not a valid symbol."""
    if isinstance(tickers, str):
        tickers = [tickers]
    if not tickers:
        raise SourceError("synthetic: no tickers requested")
    for ticker in tickers:
        if not isinstance(ticker, str) or not TICKER_PATTERN.fullmatch(ticker):
            raise SourceError(f"synthetic: invalid ticker {ticker!r} (expected e.g. 'AAPL', 'BRK.B')")
    return sorted(set(tickers))


def _chunks(names: list[str], size: int) -> list[list[str]]:
    """Consecutive groups of at most ``size`` tickers (paths do not depend on the grouping)."""
    return [names[i : i + size] for i in range(0, len(names), size)]


def _utc(moment: datetime | date | str) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


def _ny_date(stamp: pd.Timestamp) -> date:
    return stamp.tz_convert(calendar.EXCHANGE_TZ).date()


def _build_grid(days: list[date], step: Interval) -> _Grid:
    """Bar start times of the regular sessions of ``days`` (one bar per session for 1d)."""
    starts: list[np.ndarray] = []
    minutes: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    lengths = np.empty(len(days), dtype=np.int64)
    for i, day in enumerate(days):
        opened, closed = calendar.session_bounds(day)
        session_minutes = int((closed - opened) / pd.Timedelta(minutes=1))
        bar_minutes = session_minutes if step is Interval.D1 else step.minutes
        count = session_minutes // bar_minutes
        offsets = np.arange(count, dtype=np.int64) * bar_minutes
        starts.append(opened.value + offsets * 60_000_000_000)
        minutes.append(np.full(count, bar_minutes, dtype=np.float64))
        positions.append((np.arange(count) + 0.5) / count)
        lengths[i] = count
    ts = pd.DatetimeIndex(np.concatenate(starts).astype("datetime64[ns]")).tz_localize("UTC")
    session_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return _Grid(ts, np.concatenate(positions), np.concatenate(minutes), session_starts, lengths)


def _u_shape(position: np.ndarray, smile: float) -> np.ndarray:
    """Mean-one parabola over the session: ``1 + smile`` times higher at the edges than at midday."""
    raw = 1.0 + smile * (2.0 * position - 1.0) ** 2
    return raw / (1.0 + smile / 3.0)


def _student_t(rng: np.random.Generator, dof: float, size: int) -> np.ndarray:
    """Student-t draws scaled to unit variance."""
    return rng.standard_t(dof, size) * np.sqrt((dof - 2.0) / dof)


def _rng(config: SyntheticConfig, key: int, step: Interval, first_day: date) -> np.random.Generator:
    return np.random.default_rng([config.seed, key, step.minutes, first_day.toordinal()])


def _ticker_key(ticker: str) -> int:
    return zlib.crc32(ticker.encode("ascii"))


def _garch_variance(eps: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """Unit-mean GARCH(1,1) variance of each row given the innovations up to the previous row (h_0 = 1)."""
    drive = np.empty_like(eps)
    drive[0] = 1.0
    drive[1:] = (1.0 - alpha - beta) + alpha * eps[:-1] ** 2
    return lfilter([1.0], [1.0, -beta], drive, axis=0)


def _mean_reverting(innovations: np.ndarray, predictability: float, before: np.ndarray | None = None) -> np.ndarray:
    """Standardized returns ``x_t = innovations_t - p * (x_{t-1} + ... + x_{t-5}) / sqrt(5)``, continuing from
    the rows ``before`` (their last 5 are the first rows' past; none: a zero past)."""
    coef = predictability / np.sqrt(_ZSCORE_WINDOW)
    a = [1.0] + [coef] * _ZSCORE_WINDOW
    if before is None or not len(before):
        return innovations if predictability == 0.0 else lfilter([1.0], a, innovations, axis=0)
    past = np.zeros((_ZSCORE_WINDOW, innovations.shape[1]))
    tail = before[-_ZSCORE_WINDOW:][::-1]  # most recent first, as lfiltic wants
    past[: len(tail)] = tail
    zi = np.stack([lfiltic([1.0], a, past[:, k]) for k in range(innovations.shape[1])], axis=1)
    return lfilter([1.0], a, innovations, axis=0, zi=zi)[0]


def _regime_row(config: SyntheticConfig, grid: _Grid) -> int:
    """The first bar of the regime change's session (or later), or the number of bars (no change in range)."""
    if config.regime_change is None:
        return len(grid.ts)
    first = pd.Timestamp(config.regime_change, tz="America/New_York").tz_convert("UTC")
    return int(np.searchsorted(grid.ts.asi8, first.value, side="left"))


def _bridge_extremes(
    log_open: np.ndarray, log_close: np.ndarray, variance: np.ndarray, rng_hi: np.ndarray, rng_lo: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Log high and low drawn from the extremes of a Brownian bridge (uniforms ``rng_hi``, ``rng_lo`` in (0, 1])."""
    mid = log_open + log_close
    diff2 = (log_close - log_open) ** 2
    high = 0.5 * (mid + np.sqrt(diff2 - 2.0 * variance * np.log(rng_hi)))
    low = 0.5 * (mid - np.sqrt(diff2 - 2.0 * variance * np.log(rng_lo)))
    return high, low


@dataclass(frozen=True)
class _Draws:
    """All random numbers of one request, arrays of shape (bars or sessions, tickers)."""

    eps: np.ndarray  # unit-variance one-factor innovations per bar
    night: np.ndarray  # unit-variance one-factor innovations per session (overnight gap)
    jumps: np.ndarray  # log-jump per bar (mostly zero)
    uniforms: np.ndarray  # (2, bars, tickers) uniforms in (0, 1] for the high and the low
    volume_noise: np.ndarray  # standard normal per bar
    log_start: np.ndarray  # log first open per ticker


def _draw(config: SyntheticConfig, grid: _Grid, tickers: list[str], step: Interval, first_day: date) -> _Draws:
    """Random numbers: a shared market stream plus one independent stream per ticker name."""
    n_bars, n_days, n_tickers = len(grid.ts), len(grid.session_starts), len(tickers)
    market = _rng(config, _MARKET_STREAM, step, first_day)
    factor = _student_t(market, config.t_dof, n_bars)[:, None]
    factor_night = _student_t(market, config.t_dof, n_days)[:, None]

    own = np.empty((n_bars, n_tickers))
    own_night = np.empty((n_days, n_tickers))
    jumps = np.zeros((n_bars, n_tickers))
    uniforms = np.empty((2, n_bars, n_tickers))
    noise = np.empty((n_bars, n_tickers))
    log_start = np.empty(n_tickers)
    low_price, high_price = np.log(config.start_price_range)
    for k, ticker in enumerate(tickers):
        rng = _rng(config, _ticker_key(ticker), step, first_day)
        log_start[k] = rng.uniform(low_price, high_price)
        own[:, k] = _student_t(rng, config.t_dof, n_bars)
        own_night[:, k] = _student_t(rng, config.t_dof, n_days)
        hit = rng.random(n_days) < config.jump_prob_per_day
        where = grid.session_starts + rng.integers(0, grid.session_lengths)
        size = rng.normal(0.0, config.jump_scale, n_days)
        jumps[where[hit], k] = size[hit]
        uniforms[:, :, k] = 1.0 - rng.random((2, n_bars))
        noise[:, k] = rng.standard_normal(n_bars)
    rho = config.market_beta_corr
    return _Draws(
        eps=np.sqrt(rho) * factor + np.sqrt(1.0 - rho) * own,
        night=np.sqrt(rho) * factor_night + np.sqrt(1.0 - rho) * own_night,
        jumps=jumps,
        uniforms=uniforms,
        volume_noise=noise,
        log_start=log_start,
    )


def _simulate(
    config: SyntheticConfig, grid: _Grid, tickers: list[str], step: Interval, first_day: date
) -> dict[str, np.ndarray]:
    """OHLCV arrays of shape (bars, tickers)."""
    draws = _draw(config, grid, tickers, step, first_day)
    variance = _garch_variance(draws.eps, config.garch_alpha, config.garch_beta)
    per_day = config.annual_vol**2 / _TRADING_DAYS_PER_YEAR
    intraday_var = per_day * (1.0 - config.overnight_var_share)
    shape = _u_shape(grid.position, _VOL_SMILE) if step.intraday else np.ones(len(grid.ts))
    sigma = (np.sqrt(intraday_var * grid.minutes / _REGULAR_SESSION_MINUTES) * shape)[:, None] * np.sqrt(variance)
    innovations = draws.eps + draws.jumps / sigma
    change = _regime_row(config, grid)
    x = _mean_reverting(innovations[:change], config.predictability)
    if change < len(innovations):
        x = np.vstack([x, _mean_reverting(innovations[change:], config.predictability_after, x)])
    returns = sigma * x

    gap = np.zeros_like(returns)
    gap[grid.session_starts[1:]] = draws.night[1:] * np.sqrt(per_day * config.overnight_var_share)
    log_close = draws.log_start + np.cumsum(returns + gap, axis=0)
    log_open = np.vstack([draws.log_start[None, :], log_close[:-1]]) + gap
    log_high, log_low = _bridge_extremes(log_open, log_close, sigma**2, draws.uniforms[0], draws.uniforms[1])
    volume = _volume(config, grid, step, x, variance, draws.volume_noise)
    return _round_prices(log_open, log_high, log_low, log_close) | {"volume": volume}


def _volume(
    config: SyntheticConfig, grid: _Grid, step: Interval, x: np.ndarray, variance: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    """Positive integer volumes, higher at the session edges and on large or volatile bars."""
    shape = _u_shape(grid.position, _VOLUME_SMILE) if step.intraday else np.ones(len(grid.ts))
    base = (config.mean_volume * grid.minutes * shape)[:, None]
    activity = 0.5 + 0.5 * np.minimum(np.abs(x), _MAX_ABS_X_FOR_VOLUME) / _MEAN_ABS_X
    lognormal = np.exp(_VOLUME_NOISE * noise - 0.5 * _VOLUME_NOISE**2)
    return np.maximum(1, np.rint(base * activity * np.sqrt(variance) * lognormal)).astype(np.int64)


def _round_prices(
    log_open: np.ndarray, log_high: np.ndarray, log_low: np.ndarray, log_close: np.ndarray
) -> dict[str, np.ndarray]:
    """Cent prices with ``low <= min(open, close)`` and ``high >= max(open, close)``, all >= 0.01."""
    open_ = np.maximum(np.round(np.exp(log_open), 2), _MIN_PRICE)
    close = np.maximum(np.round(np.exp(log_close), 2), _MIN_PRICE)
    high = np.maximum(np.round(np.exp(log_high), 2), np.maximum(open_, close))
    low = np.maximum(np.minimum(np.round(np.exp(log_low), 2), np.minimum(open_, close)), _MIN_PRICE)
    return {"open": open_, "high": high, "low": low, "close": close}


def _to_frame(
    columns: dict[str, np.ndarray], grid: _Grid, tickers: list[str], step: Interval, keep: np.ndarray
) -> pd.DataFrame:
    """Canonical bars sorted by (ticker, ts), rows outside the window dropped."""
    n_bars, n_tickers = len(grid.ts), len(tickers)
    mask = np.tile(keep, n_tickers)
    frame = pd.DataFrame(
        {
            "ticker": np.repeat(np.array(tickers, dtype=object), n_bars)[mask],
            "ts": np.tile(grid.ts.asi8, n_tickers)[mask].astype("datetime64[ns]"),
            "interval": step.value,
            **{name: values.ravel(order="F")[mask] for name, values in columns.items()},
        }
    )
    frame["ts"] = frame["ts"].dt.tz_localize("UTC")
    return coerce_bars(frame)
