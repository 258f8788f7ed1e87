"""Does the model's edge survive trading costs? Its holdout probabilities, and each baseline's, traded through
the C++ executor and its paper exchange (:func:`hft.backtest.run_backtest`: the live strategy, risk limits and
``HFT_EXEC_*`` costs), against buy-and-hold at matched exposure.

* **Thresholds from validation data only.** A model's probabilities have their own centre and spread (class
  weights, trees' raw rates), so the executor's fixed thresholds would trade each model differently. Each
  predictor's signal is recentred on the median of its probabilities on the last walk-forward fold's
  validation block (``p - median + 0.5``, clipped to [0, 1]); its entry distance from 0.5 is a quantile of
  ``|p - median|`` there (levels :data:`LEVELS`), its exit distance half of it (hysteresis), and the level
  whose validation backtest earns the most after costs is kept. The holdout is traded once with it.
* **Figures** (holdout, after fees and slippage): net PnL, gross PnL (before costs) and costs; PnL per
  session and daily Sharpe with 95% intervals from resampling sessions (the session is the block: returns
  within a day are not independent); PnL per closed round trip and hit rate with intervals from resampling
  trades; turnover per session; mean gross exposure (sum over tickers of ``|shares| x close``, per bar) and
  the **return on gross exposure** (net PnL / mean gross exposure). Buy-and-hold of the same tickers over the
  same bars (:func:`hft.backtest.metrics.buy_and_hold`) is given the same way: its return on its own gross
  exposure, and its PnL had it held only the strategy's mean gross exposure (matched exposure).
* **Verdict.** The edge survives costs when the interval of the net PnL per session lies above 0. When no
  threshold earned after costs on validation either (the best was a loss), the verdict says so: a trader would
  not have switched the strategy on. A predictor may not trade on the holdout at all: its thresholds (from the
  fold's fit) may lie beyond what its holdout probabilities (from the refit) reach.

A predictor whose probabilities do not vary on the validation block (the majority class) never trades and is
listed as such.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from hft.backtest.engine import BacktestConfig, BacktestResult, run_backtest
from hft.backtest.metrics import (
    TRADING_DAYS,
    benchmark_metrics,
    daily_equity,
    daily_returns,
    sharpe,
    strategy_metrics,
)
from hft.features.definitions import FeatureSpec
from hft.model.evaluation import Estimate, blocks, bootstrap

log = logging.getLogger(__name__)

#: Candidate entry distances: these quantiles of ``|p - median|`` on the validation block.
LEVELS = (0.5, 0.75, 0.9, 0.95, 0.98)
#: Exit distance from 0.5 as a share of the entry distance.
HYSTERESIS = 0.5


@dataclass(frozen=True)
class Thresholds:
    """How one predictor is traded, chosen on validation data (see the module docstring)."""

    center: float  # the validation median of its probabilities: the executor sees p - center + 0.5
    enter: float  # distance from 0.5 at which a position opens (long above, short below)
    exit: float  # distance from 0.5 inside which it closes
    level: float  # the quantile of |p - center| that ``enter`` is
    validation_pnl: float  # net PnL of the validation block traded with these thresholds

    def strategy(self) -> dict[str, float]:
        """The executor's ``StrategyConfig`` thresholds."""
        return {"enter_long": 0.5 + self.enter, "exit_long": 0.5 + self.exit,
                "enter_short": 0.5 - self.enter, "exit_short": 0.5 - self.exit}

    def signal(self, proba: np.ndarray) -> np.ndarray:
        """The probabilities as the executor sees them: recentred on 0.5, clipped to [0, 1]."""
        return np.clip(np.asarray(proba, np.float64) - self.center + 0.5, 0.0, 1.0)


def trading_frame(rows: pd.DataFrame, proba: np.ndarray, spec: FeatureSpec = FeatureSpec()) -> pd.DataFrame:
    """Backtest input (``ticker, ts, probability, close, volatility``) for feature-table ``rows`` scored
    ``proba``; the volatility is the streaming job's (``spec.per_bar_volatility`` of its volatility feature)."""
    missing = [c for c in ("ticker", "ts", "close", spec.volatility_feature) if c not in rows.columns]
    if missing:
        raise ValueError(f"the feature rows lack {', '.join(missing)}: cannot trade them")
    return pd.DataFrame({
        "ticker": rows["ticker"].to_numpy(), "ts": rows["ts"].to_numpy(),
        "probability": np.asarray(proba, np.float64), "close": rows["close"].to_numpy(np.float64),
        "volatility": spec.per_bar_volatility(rows[spec.volatility_feature].to_numpy(np.float64)),
    })


def _trade(rows: pd.DataFrame, proba: np.ndarray, thresholds: Thresholds, config: BacktestConfig) -> BacktestResult:
    own = replace(config, strategy={**config.strategy, **thresholds.strategy()})
    return run_backtest(trading_frame(rows, thresholds.signal(proba)), own)


def _net_pnl(result: BacktestResult) -> float:
    return float(result.equity.iloc[-1] - result.config.initial_capital) if len(result.equity) else 0.0


def choose_thresholds(rows: pd.DataFrame, proba: np.ndarray, config: BacktestConfig) -> Thresholds | None:
    """The thresholds (of :data:`LEVELS`) whose backtest of the validation ``rows`` scored ``proba`` earns the
    most after costs; None when the probabilities do not vary (nothing to trade on)."""
    p = np.asarray(proba, np.float64)
    if not len(p):
        return None
    center = float(np.median(p))
    distance = np.abs(p - center)
    best: Thresholds | None = None
    tried: set[float] = set()
    for level in LEVELS:
        enter = min(float(np.quantile(distance, level)), 0.5)
        if not enter > 1e-12 or enter in tried:
            continue
        tried.add(enter)
        candidate = Thresholds(center, enter, enter * HYSTERESIS, level, math.nan)
        pnl = _net_pnl(_trade(rows, p, candidate, config))
        if best is None or pnl > best.validation_pnl:
            best = replace(candidate, validation_pnl=pnl)
    return best


@dataclass(frozen=True)
class Economics:
    """One predictor traded over the holdout (money in currency units; see the module docstring)."""

    name: str
    thresholds: Thresholds
    net_pnl: float
    gross_pnl: float  # before fees and slippage
    costs: float
    sessions: int
    daily_pnl: Estimate  # net PnL per session
    sharpe: Estimate  # daily, x sqrt(252)
    trades: int  # closed round trips
    pnl_per_trade: Estimate
    hit_rate: Estimate
    turnover_per_day: float  # traded notional / capital per session
    mean_gross_exposure: float
    return_on_gross: float  # net PnL / mean gross exposure
    buy_and_hold_return_on_gross: float  # its PnL / its mean gross exposure, same tickers and bars
    matched_buy_and_hold_pnl: float  # buy-and-hold's PnL at the strategy's mean gross exposure
    equity: pd.Series = field(repr=False, compare=False)

    @property
    def survives_costs(self) -> bool:
        return bool(self.daily_pnl.low > 0)

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "equity"}
        out["survives_costs"] = self.survives_costs
        return out


def _sessions_and_trades(result: BacktestResult, trades: pd.DataFrame, resamples: int, seed: int,
                         block_minutes: int | None):
    """Per-session figures resample sessions; per-trade figures resample the trades in blocks of
    ``block_minutes`` of their entry times (trades of several tickers opened together share a market move;
    None: single trades)."""
    initial = result.config.initial_capital
    daily = daily_equity(result.equity).to_numpy(np.float64)
    pnl = np.diff(np.r_[initial, daily])
    rets = daily_returns(result.equity, initial).to_numpy(np.float64)
    done = trades.loc[trades["closed"]] if len(trades) else trades
    closed = done["pnl"].to_numpy(np.float64) if len(done) else np.zeros(0)
    groups = blocks(done["entry_ts"], block_minutes) if block_minutes and len(done) else None
    return {
        "sessions": len(daily),
        "daily_pnl": bootstrap(lambda i: pnl[i].mean(), len(pnl), resamples, seed),
        "sharpe": bootstrap(lambda i: sharpe(rets[i], TRADING_DAYS), len(rets), resamples, seed),
        "trades": len(closed),
        "pnl_per_trade": bootstrap(lambda i: closed[i].mean(), len(closed), resamples, seed, groups),
        "hit_rate": bootstrap(lambda i: (closed[i] > 0).mean(), len(closed), resamples, seed, groups),
    }


def trade_holdout(name: str, rows: pd.DataFrame, proba: np.ndarray, thresholds: Thresholds, config: BacktestConfig,
                  resamples: int = 1000, seed: int = 0, block_minutes: int | None = None) -> Economics:
    """``name``'s probabilities ``proba`` on the holdout ``rows`` traded with ``thresholds``, and its figures
    (``block_minutes``: the trades' bootstrap blocks, see :func:`_sessions_and_trades`)."""
    result = _trade(rows, proba, thresholds, config)
    metrics, trades = strategy_metrics(result)
    bh = benchmark_metrics(result)
    exposure = metrics.mean_gross_exposure
    return Economics(
        name=name, thresholds=thresholds, net_pnl=metrics.pnl, gross_pnl=metrics.pnl + metrics.costs,
        costs=metrics.costs, turnover_per_day=metrics.turnover_per_day, mean_gross_exposure=exposure,
        return_on_gross=metrics.return_on_gross, buy_and_hold_return_on_gross=bh.return_on_gross,
        matched_buy_and_hold_pnl=bh.return_on_gross * exposure if exposure > 0 else 0.0,
        equity=result.equity, **_sessions_and_trades(result, trades, resamples, seed, block_minutes),
    )


@dataclass(frozen=True)
class EconomicReport:
    """Every predictor's :class:`Economics` (the model first), those that never trade, and the costs used."""

    results: dict[str, Economics]
    never_trades: list[str]
    fee_bps: float
    slippage_bps: float
    model_key: str = "model"

    @property
    def model(self) -> Economics | None:
        return self.results.get(self.model_key)

    def verdict(self) -> str:
        """One line for people: does the model's edge survive costs?"""
        m = self.model
        costs = f"fees {self.fee_bps:g} bps + slippage {self.slippage_bps:g} bps per fill"
        if m is None:
            return f"economics: the model's probabilities do not vary on validation data; it never trades ({costs})"
        d = m.daily_pnl
        head = ("the edge SURVIVES costs" if m.survives_costs else
                "the edge does NOT survive costs" if m.gross_pnl > 0 else "no edge, before or after costs")
        line = (f"economics ({costs}): {head}: net PnL per session {d.value:+,.0f} [{d.low:+,.0f}, {d.high:+,.0f}] "
                f"over {m.sessions} sessions (gross {m.gross_pnl:+,.0f}, costs {m.costs:,.0f}, {m.trades} trades); "
                f"return on gross exposure {m.return_on_gross:+.3%} vs buy-and-hold {m.buy_and_hold_return_on_gross:+.3%}")
        if not m.thresholds.validation_pnl > 0:
            line += (f"; no threshold earned after costs on validation either (best {m.thresholds.validation_pnl:+,.0f}, "
                     f"at the {m.thresholds.level:.0%} quantile)")
        return line

    def table(self) -> str:
        head = (f"{'predictor':<24} {'net PnL':>11} {'gross PnL':>11} {'costs':>10} {'PnL/session [95%]':>30} "
                f"{'Sharpe [95%]':>22} {'trades':>7} {'PnL/trade':>10} {'hit rate':>9} {'turnover/d':>10} "
                f"{'ret/gross':>9} {'B&H matched':>11} {'valid. PnL':>10}")
        lines = [head, "-" * len(head)]
        for e in self.results.values():
            d, s = e.daily_pnl, e.sharpe
            lines.append(
                f"{e.name:<24} {e.net_pnl:>+11,.0f} {e.gross_pnl:>+11,.0f} {e.costs:>10,.0f} "
                f"{f'{d.value:+,.0f} [{d.low:+,.0f}, {d.high:+,.0f}]':>30} "
                f"{f'{s.value:+.2f} [{s.low:+.2f}, {s.high:+.2f}]':>22} {e.trades:>7d} {e.pnl_per_trade.value:>+10,.1f} "
                f"{e.hit_rate.value:>9.1%} {e.turnover_per_day:>10.3f} {e.return_on_gross:>+9.3%} "
                f"{e.matched_buy_and_hold_pnl:>+11,.0f} {e.thresholds.validation_pnl:>+10,.0f}")
        if self.never_trades:
            lines.append(f"never trade (constant probabilities): {', '.join(self.never_trades)}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"fee_bps": self.fee_bps, "slippage_bps": self.slippage_bps, "verdict": self.verdict(),
                "never_trades": self.never_trades, "results": {k: v.to_dict() for k, v in self.results.items()}}

    def metrics(self) -> dict[str, float]:
        """MLflow metrics (finite values only): ``econ_<predictor>_<figure>``, and ``econ_survives_costs``."""
        out: dict[str, float] = {}
        for name, e in self.results.items():
            out.update({f"econ_{name}_net_pnl": e.net_pnl, f"econ_{name}_gross_pnl": e.gross_pnl,
                        f"econ_{name}_daily_pnl": e.daily_pnl.value, f"econ_{name}_daily_pnl_ci_low": e.daily_pnl.low,
                        f"econ_{name}_daily_pnl_ci_high": e.daily_pnl.high, f"econ_{name}_sharpe": e.sharpe.value,
                        f"econ_{name}_trades": float(e.trades), f"econ_{name}_pnl_per_trade": e.pnl_per_trade.value,
                        f"econ_{name}_hit_rate": e.hit_rate.value, f"econ_{name}_turnover_per_day": e.turnover_per_day,
                        f"econ_{name}_return_on_gross": e.return_on_gross})
        if self.model is not None:
            out["econ_survives_costs"] = float(self.model.survives_costs)
            out["econ_buy_and_hold_return_on_gross"] = self.model.buy_and_hold_return_on_gross
        return {k: float(v) for k, v in out.items() if np.isfinite(v)}

    def plot(self, path: str | Path) -> Path:
        """Net PnL over the holdout's bars of every predictor, and buy-and-hold at the model's exposure."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 5), tight_layout=True)
        ax = fig.subplots()
        for e in self.results.values():
            pnl = e.equity.to_numpy() - e.equity.iloc[0] if len(e.equity) else np.zeros(0)
            ax.plot(np.arange(len(pnl)), pnl, lw=1.2 if e.name == self.model_key else 0.8, label=e.name)
        ax.axhline(0.0, color="black", lw=0.5)
        ax.set_xlabel("holdout bar")
        ax.set_ylabel("net PnL after costs")
        ax.set_title(f"holdout, fees {self.fee_bps:g} bps + slippage {self.slippage_bps:g} bps")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
        path = Path(path)
        fig.savefig(path, dpi=100)
        return path


def economic_evaluation(valid_rows: pd.DataFrame, valid_proba: dict[str, np.ndarray], hold_rows: pd.DataFrame,
                        hold_proba: dict[str, np.ndarray], config: BacktestConfig | None = None,
                        resamples: int = 1000, seed: int = 0, model_key: str = "model",
                        block_minutes: int | None = None) -> EconomicReport:
    """Every predictor of ``hold_proba`` (probabilities on the holdout ``hold_rows``) traded over the holdout
    with thresholds chosen on its ``valid_proba`` of ``valid_rows`` (see the module docstring). ``config``:
    capital, costs and overrides of the backtest (None: the live ``HFT_EXEC_*`` settings); ``block_minutes``:
    the per-trade figures' bootstrap blocks."""
    config = (config or BacktestConfig()).resolved()
    results, never = {}, []
    for name in [model_key, *(k for k in hold_proba if k != model_key)]:
        if name not in hold_proba:
            continue
        thresholds = choose_thresholds(valid_rows, valid_proba[name], config)
        if thresholds is None:
            never.append(name)
            continue
        results[name] = trade_holdout(name, hold_rows, hold_proba[name], thresholds, config, resamples, seed,
                                      block_minutes)
    assert config.fee_bps is not None and config.slippage_bps is not None  # resolved
    report = EconomicReport(results, never, config.fee_bps, config.slippage_bps, model_key)
    log.info("%s", report.verdict())
    return report


__all__ = ["HYSTERESIS", "LEVELS", "EconomicReport", "Economics", "Thresholds", "choose_thresholds",
           "economic_evaluation", "trade_holdout", "trading_frame"]
