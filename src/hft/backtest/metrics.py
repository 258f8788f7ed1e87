"""Performance of a backtest against buy-and-hold of the same tickers over the same bars.

Definitions (each applies to the strategy and to the benchmark alike):

- **PnL**: final equity - initial capital, currency units; **return**: PnL / initial capital.
- **Sharpe (daily)**, the headline figure: equity at the last bar of each New York session, daily simple
  returns (the first against the initial capital), ``mean / std(ddof=1) * sqrt(252)``; risk-free rate 0.
  NaN with fewer than two sessions or zero variance.
- **Sharpe (per bar)**: the same on per-bar returns of the equity curve (overnight gaps included in the
  first bar of a session), annualised with ``sqrt(252 * median bars per session)``. Shown for short runs;
  it understates risk when returns are autocorrelated.
- **Max drawdown**: largest fall of equity from its running peak (the initial capital counts as a peak),
  as a fraction of that peak and in currency.
- **Turnover**: traded notional / initial capital, over the whole run and per session on average.
- **Trades**: round trips per ticker, from flat (or a flip) back to flat (or the next flip). A fill that
  flips the position closes one trade and opens the next; its fee is split between them pro rata to the
  shares of each part (as backtesting.py charges commission on each side). **Hit rate**: the share of closed
  trades whose PnL (price moves, slippage and fees) is positive. Trades still open at the end are counted
  apart. For buy-and-hold: one open trade per ticker, hit rate = share of tickers in profit at the end.
- **Costs**: fees + slippage (the fill price's distance from the bar's close, times the shares).
- **Gross exposure**: per bar, the sum over tickers of ``|shares| x close``; its mean over the bars, and the
  **return on gross exposure** = PnL / mean gross exposure (a strategy that holds a sliver of its capital and
  a fully invested buy-and-hold compared per unit of money at risk).

Buy-and-hold puts ``initial_capital / n_tickers`` into each ticker at its first close in the backtest,
whole shares, paying the same fee and slippage as the strategy, and holds to the end (no exit costs, as
the strategy's open positions are not closed either).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hft.backtest.engine import BacktestResult
from hft.data.calendar import session_date

log = logging.getLogger(__name__)

TRADING_DAYS = 252


@dataclass(frozen=True)
class Metrics:
    """One column of the report (see the module docstring for each definition)."""

    name: str
    initial_capital: float
    final_equity: float
    pnl: float
    total_return: float
    sharpe_daily: float
    sharpe_per_bar: float
    max_drawdown: float
    max_drawdown_value: float
    turnover: float
    turnover_per_day: float
    trades: int
    open_trades: int
    hit_rate: float
    fills: int
    fees: float
    slippage: float
    costs: float
    sessions: int
    bars: int
    mean_gross_exposure: float
    return_on_gross: float

    def as_dict(self) -> dict:
        return asdict(self)


# -- series statistics ---------------------------------------------------------------------------------------
def sharpe(returns: np.ndarray | pd.Series, periods_per_year: float) -> float:
    """``mean / std(ddof=1) * sqrt(periods_per_year)``; NaN with fewer than 2 returns or zero variance."""
    r = np.asarray(returns, np.float64)
    r = r[np.isfinite(r)]
    if len(r) < 2:
        return math.nan
    sd = r.std(ddof=1)
    if not sd > 1e-15 * max(1.0, abs(r.mean())):
        return math.nan
    return float(r.mean() / sd * math.sqrt(periods_per_year))


def max_drawdown(equity: pd.Series | np.ndarray, initial: float | None = None) -> tuple[float, float]:
    """(largest fractional fall from a running peak, the same in currency); ``initial`` counts as a peak."""
    e = np.asarray(equity, np.float64)
    if len(e) == 0:
        return 0.0, 0.0
    peak = np.maximum.accumulate(np.r_[initial if initial is not None else e[0], e])[1:]
    falls = peak - e
    frac = falls / peak
    return float(max(frac.max(), 0.0)), float(max(falls.max(), 0.0))


def daily_equity(equity: pd.Series) -> pd.Series:
    """Equity at the last bar of each New York session date."""
    dates = session_date(pd.DatetimeIndex(equity.index))
    return equity.groupby(np.asarray(dates)).last()


def daily_returns(equity: pd.Series, initial: float) -> pd.Series:
    daily = daily_equity(equity)
    return daily / np.r_[initial, daily.to_numpy()[:-1]] - 1.0


def bar_returns(equity: pd.Series, initial: float) -> np.ndarray:
    e = equity.to_numpy(np.float64)
    return e / np.r_[initial, e[:-1]] - 1.0


# -- trades --------------------------------------------------------------------------------------------------
def round_trips(fills: pd.DataFrame, marks: dict[str, float] | None = None) -> pd.DataFrame:
    """Round trips per ticker from the fills (see the module docstring): ``ticker, entry_ts, exit_ts,
    side (+1/-1), shares (largest absolute position), pnl, closed``. Open trades are valued at ``marks``
    (ticker -> last price; NaN without one)."""
    cols = ["ticker", "entry_ts", "exit_ts", "side", "shares", "pnl", "closed"]
    if fills.empty:
        return pd.DataFrame({c: [] for c in cols})
    f = fills.sort_values(["ticker", "row"], kind="stable").reset_index(drop=True)
    tick = f["ticker"].to_numpy()
    q = f["qty"].to_numpy(np.int64)
    px = f["price"].to_numpy(np.float64)
    fee = f["fee"].to_numpy(np.float64)
    after = pd.Series(q).groupby(tick).cumsum().to_numpy(np.int64)
    before = after - q
    flip = (before != 0) & (after != 0) & (np.sign(before) != np.sign(after))
    opens = (before == 0) | flip
    trade = np.cumsum(opens) - 1  # trade id of the part that opens (or of the whole fill)
    # Part A: the whole fill, or for a flip the closing part (-before) of the previous trade.
    qa = np.where(flip, -before, q)
    ta = np.where(flip, trade - 1, trade)
    # Part B (flips only): the opening part (after) of the new trade.
    qb = np.where(flip, after, 0)
    fa = fee * np.abs(qa) / np.abs(q)
    parts = pd.DataFrame({
        "trade": np.r_[ta, trade[flip]],
        "qty": np.r_[qa, qb[flip]],
        "cash": np.r_[-qa * px - fa, -qb[flip] * px[flip] - (fee - fa)[flip]],
        "ts": np.r_[f["ts"].to_numpy(), f["ts"].to_numpy()[flip]],
        "ticker": np.r_[tick, tick[flip]],
        "closes": np.r_[(after == 0) | flip, np.zeros(int(flip.sum()), bool)],
    }).sort_values(["trade", "ts"], kind="stable")
    parts["pos"] = parts.groupby("trade")["qty"].cumsum()
    parts["abs_pos"] = parts["pos"].abs()
    g = parts.groupby("trade", sort=True)
    out = pd.DataFrame({
        "ticker": g["ticker"].first(),
        "entry_ts": g["ts"].first(),
        "exit_ts": g["ts"].last(),
        "side": np.sign(g["qty"].first()).astype(int),
        "shares": g["abs_pos"].max(),
        "cash": g["cash"].sum(),
        "closed": g["closes"].any(),
        "pos": g["pos"].last(),
    })
    marks = marks or {}
    last = out["ticker"].map(lambda t: marks.get(t, math.nan)).astype(np.float64)
    out["pnl"] = np.where(out["closed"], out["cash"], out["cash"] + out["pos"] * last)
    out.loc[~out["closed"], "exit_ts"] = pd.NaT
    return out[cols].reset_index(drop=True)


# -- the two columns -----------------------------------------------------------------------------------------
def _bars_per_session(index: pd.DatetimeIndex) -> float:
    if len(index) == 0:
        return math.nan
    counts = pd.Series(1, index=np.asarray(session_date(index))).groupby(level=0).sum()
    return float(counts.median())


def _metrics(name, equity: pd.Series, initial: float, trades: pd.DataFrame, fills: pd.DataFrame,
             exposure: pd.Series, hit_rate: float | None = None) -> Metrics:
    sessions = len(daily_equity(equity)) if len(equity) else 0
    bps = _bars_per_session(pd.DatetimeIndex(equity.index))
    dd, dd_value = max_drawdown(equity, initial)
    closed = trades[trades["closed"]] if len(trades) else trades
    if hit_rate is None:
        hit_rate = float((closed["pnl"] > 0).mean()) if len(closed) else math.nan
    notional = float(fills["notional"].sum()) if len(fills) else 0.0
    fees = float(fills["fee"].sum()) if len(fills) else 0.0
    slippage = float(fills["slippage"].sum()) if len(fills) else 0.0
    final = float(equity.iloc[-1]) if len(equity) else initial
    mean_exposure = float(exposure.mean()) if len(exposure) else 0.0
    return Metrics(
        name=name, initial_capital=initial, final_equity=final, pnl=final - initial,
        total_return=final / initial - 1.0,
        sharpe_daily=sharpe(daily_returns(equity, initial), TRADING_DAYS) if len(equity) else math.nan,
        sharpe_per_bar=sharpe(bar_returns(equity, initial), TRADING_DAYS * bps) if len(equity) else math.nan,
        max_drawdown=dd, max_drawdown_value=dd_value,
        turnover=notional / initial, turnover_per_day=notional / initial / max(sessions, 1),
        trades=int(len(closed)), open_trades=int(len(trades) - len(closed)), hit_rate=hit_rate,
        fills=int(len(fills)), fees=fees, slippage=slippage, costs=fees + slippage,
        sessions=sessions, bars=int(len(equity)), mean_gross_exposure=mean_exposure,
        return_on_gross=(final - initial) / mean_exposure if mean_exposure > 0 else math.nan,
    )


def strategy_metrics(result: BacktestResult) -> tuple[Metrics, pd.DataFrame]:
    """The strategy's metrics and its round trips."""
    marks = _last_closes(result)
    trades = round_trips(result.fills, marks.to_dict())
    return _metrics("strategy", result.equity, result.config.initial_capital, trades, result.fills,
                    gross_exposure(result)), trades


def _last_closes(result: BacktestResult) -> pd.Series:
    return result.predictions.groupby("ticker")["close"].last()


def closes_per_bar(result: BacktestResult) -> pd.DataFrame:
    """Close per bar (rows: the equity curve's bars, stamped at their ends) and ticker, forward-filled."""
    from hft.schemas import bar_end_ns

    wide = result.predictions.pivot_table(index="ts", columns="ticker", values="close", aggfunc="last")
    ends = bar_end_ns(wide.index.as_unit("ns").asi8, result.config.interval)
    wide.index = pd.DatetimeIndex(pd.to_datetime(ends, utc=True), name="ts")
    return wide.reindex(result.equity.index).ffill()


def gross_exposure(result: BacktestResult, positions: pd.DataFrame | None = None) -> pd.Series:
    """Gross exposure per bar: the sum over tickers of ``|shares| x close`` (currency), of the backtest's own
    positions or of ``positions`` (shares per bar and ticker, e.g. :func:`buy_and_hold_holdings`)."""
    held = result.positions if positions is None else positions
    closes = closes_per_bar(result).reindex(index=held.index, columns=held.columns)
    return (held.abs() * closes.fillna(0.0)).sum(axis=1).rename("gross_exposure")


def _buy_and_hold_entries(result: BacktestResult, closes: pd.DataFrame) -> pd.DataFrame:
    """Buy-and-hold's one entry fill per ticker (see the module docstring)."""
    cfg = result.config
    budget = cfg.initial_capital / len(closes.columns)
    fee_bps, slippage_bps = cfg.fee_bps, cfg.slippage_bps
    assert fee_bps is not None and slippage_bps is not None  # run_backtest resolves them
    rows = []
    for t in closes.columns:  # one entry per ticker
        first = closes[t].first_valid_index()
        market = float(closes.at[first, t])
        price = market * (1 + slippage_bps / 1e4)
        shares = int(budget // (price * (1 + fee_bps / 1e4)))
        rows.append({"ts": first, "ticker": t, "qty": shares, "price": price, "market": market,
                     "fee": shares * price * fee_bps / 1e4, "slippage": shares * (price - market),
                     "notional": shares * price, "row": 0})
    return pd.DataFrame(rows)


def buy_and_hold_holdings(result: BacktestResult) -> pd.DataFrame:
    """Shares buy-and-hold holds per bar (the equity curve's bars) and ticker."""
    closes = closes_per_bar(result)
    if not len(closes.columns):
        return pd.DataFrame(index=result.equity.index)
    return _holdings(closes, _buy_and_hold_entries(result, closes).set_index("ticker"))


def _holdings(closes: pd.DataFrame, entry: pd.DataFrame) -> pd.DataFrame:
    """Shares per bar and ticker from each ticker's entry (``entry``: the entry fills by ticker) on."""
    return pd.DataFrame({t: np.where(closes.index >= entry.at[t, "ts"], entry.at[t, "qty"], 0) for t in closes.columns},
                        index=closes.index)


def buy_and_hold(result: BacktestResult) -> tuple[pd.Series, pd.DataFrame, pd.DataFrame]:
    """Buy-and-hold of the backtest's tickers over its bars: (equity curve, its entry fills, its trades)."""
    cfg = result.config
    closes = closes_per_bar(result)
    tickers = list(closes.columns)
    if not tickers:
        empty = pd.DataFrame(columns=["ts", "ticker", "qty", "price", "fee", "slippage", "notional", "row"])
        return pd.Series(cfg.initial_capital, index=result.equity.index, name="equity"), empty, round_trips(empty)
    fills = _buy_and_hold_entries(result, closes)
    shares = fills.set_index("ticker")["qty"]
    entry = fills.set_index("ticker")
    held = _holdings(closes, entry)  # the entries just made, not computed again
    value = (held * closes.fillna(0.0)).sum(axis=1)
    spent = pd.DataFrame({t: np.where(closes.index >= entry.at[t, "ts"], entry.at[t, "notional"] + entry.at[t, "fee"], 0.0)
                          for t in tickers}, index=closes.index).sum(axis=1)
    equity = (cfg.initial_capital - spent + value).rename("equity")
    last = closes.iloc[-1]
    trades = pd.DataFrame({
        "ticker": tickers, "entry_ts": fills["ts"].to_numpy(), "exit_ts": pd.NaT, "side": 1,
        "shares": shares.to_numpy(), "closed": False,
        "pnl": (shares * last - entry["notional"] - entry["fee"]).to_numpy(),
    })
    return equity, fills, trades


def benchmark_metrics(result: BacktestResult) -> Metrics:
    equity, fills, trades = buy_and_hold(result)
    hit = float((trades["pnl"] > 0).mean()) if len(trades) else math.nan
    return _metrics("buy_and_hold", equity, result.config.initial_capital, trades, fills,
                    gross_exposure(result, buy_and_hold_holdings(result)), hit_rate=hit)


# -- report --------------------------------------------------------------------------------------------------
_ROWS = [
    ("initial capital", "initial_capital", "{:,.2f}"),
    ("final equity", "final_equity", "{:,.2f}"),
    ("total PnL", "pnl", "{:,.2f}"),
    ("total return", "total_return", "{:.4%}"),
    ("Sharpe (daily, x sqrt 252)", "sharpe_daily", "{:.3f}"),
    ("Sharpe (per bar, annualised)", "sharpe_per_bar", "{:.3f}"),
    ("max drawdown", "max_drawdown", "{:.4%}"),
    ("max drawdown (currency)", "max_drawdown_value", "{:,.2f}"),
    ("turnover (notional / capital)", "turnover", "{:.3f}"),
    ("turnover per session", "turnover_per_day", "{:.3f}"),
    ("closed trades", "trades", "{:d}"),
    ("open trades", "open_trades", "{:d}"),
    ("hit rate", "hit_rate", "{:.2%}"),
    ("fills", "fills", "{:d}"),
    ("fees", "fees", "{:,.2f}"),
    ("slippage", "slippage", "{:,.2f}"),
    ("costs (fees + slippage)", "costs", "{:,.2f}"),
    ("mean gross exposure", "mean_gross_exposure", "{:,.2f}"),
    ("return on gross exposure", "return_on_gross", "{:.4%}"),
    ("sessions", "sessions", "{:d}"),
    ("bars", "bars", "{:d}"),
]


def _fmt(fmt: str, value) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return fmt.format(value)


def metrics_table(strategy: Metrics, benchmark: Metrics) -> str:
    """Plain-text table: one row per metric, strategy and buy-and-hold side by side."""
    lines = [(label, _fmt(fmt, getattr(strategy, key)), _fmt(fmt, getattr(benchmark, key))) for label, key, fmt in _ROWS]
    w0 = max(len(r[0]) for r in lines)
    w1 = max(len("strategy"), *(len(r[1]) for r in lines))
    w2 = max(len("buy & hold"), *(len(r[2]) for r in lines))
    out = [f"{'metric':<{w0}}  {'strategy':>{w1}}  {'buy & hold':>{w2}}", "-" * (w0 + w1 + w2 + 4)]
    out += [f"{a:<{w0}}  {b:>{w1}}  {c:>{w2}}" for a, b, c in lines]
    return "\n".join(out)


def plot_equity(result: BacktestResult, benchmark: pd.Series, path: Path) -> Path:
    """Equity of the strategy and buy-and-hold (top) and the strategy's drawdown (bottom), as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6), tight_layout=True)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    x = np.arange(len(result.equity))  # bar number: no flat lines over nights and weekends
    top.plot(x, result.equity.to_numpy(), label="strategy", lw=1.0)
    top.plot(x, benchmark.to_numpy(), label="buy & hold", lw=1.0)
    top.set_ylabel("equity")
    top.legend(loc="best")
    top.grid(alpha=0.3)
    e = result.equity.to_numpy()
    peak = np.maximum.accumulate(np.r_[result.config.initial_capital, e])[1:]
    bottom.fill_between(x, (e - peak) / peak * 100, 0, color="tab:red", alpha=0.4)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    if len(x):
        ticks = np.linspace(0, len(x) - 1, num=min(6, len(x))).astype(int)
        bottom.set_xticks(ticks)
        bottom.set_xticklabels([result.equity.index[i].strftime("%Y-%m-%d %H:%M") for i in ticks])
    bottom.set_xlabel("bar")
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


@dataclass(frozen=True)
class Report:
    strategy: Metrics
    benchmark: Metrics
    table: str
    trades: pd.DataFrame
    files: dict[str, Path]


def per_venue(fills: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``{venue: {"fills", "shares", "notional", "fees"}}`` in order of first fill (one venue: one entry)."""
    out: dict[str, dict[str, float]] = {}
    for venue, f in fills.groupby("venue", sort=False):
        out[str(venue)] = {"fills": int(len(f)), "shares": int(f["qty"].abs().sum()),
                           "notional": float(f["notional"].sum()), "fees": float(f["fee"].sum())}
    return out


def write_report(result: BacktestResult, out_dir: str | Path) -> Report:
    """Metrics against buy-and-hold, written to ``out_dir``: ``report.txt`` (the table), ``metrics.json``
    (with the fills per venue),
    ``equity.png``, ``equity.csv`` (strategy and buy-and-hold per bar), ``fills.csv``, ``trades.csv``."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    strat, trades = strategy_metrics(result)
    bench_equity, _, _ = buy_and_hold(result)
    bench = benchmark_metrics(result)
    table = metrics_table(strat, bench)
    files = {
        "report": out / "report.txt",
        "metrics": out / "metrics.json",
        "equity_png": out / "equity.png",
        "equity_csv": out / "equity.csv",
        "fills": out / "fills.csv",
        "trades": out / "trades.csv",
    }
    files["report"].write_text(table + "\n")
    files["metrics"].write_text(json.dumps({"strategy": strat.as_dict(), "buy_and_hold": bench.as_dict(),
                                            "venues": per_venue(result.fills)}, indent=2, default=float) + "\n")
    plot_equity(result, bench_equity, files["equity_png"])
    pd.DataFrame({"strategy": result.equity, "buy_and_hold": bench_equity}).to_csv(files["equity_csv"])
    result.fills.drop(columns=["row"]).to_csv(files["fills"], index=False)
    trades.to_csv(files["trades"], index=False)
    return Report(strat, bench, table, trades, files)


__all__ = ["Metrics", "Report", "bar_returns", "benchmark_metrics", "buy_and_hold", "buy_and_hold_holdings",
           "closes_per_bar", "daily_equity", "daily_returns", "gross_exposure", "max_drawdown", "metrics_table",
           "per_venue", "plot_equity", "round_trips", "sharpe", "strategy_metrics", "write_report"]
