"""Metrics on hand-computable equity curves and fills; buy-and-hold; the written report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hft.backtest.engine import BacktestConfig, run_backtest
from hft.backtest.metrics import (
    buy_and_hold,
    daily_returns,
    max_drawdown,
    metrics_table,
    round_trips,
    sharpe,
    strategy_metrics,
    write_report,
)


def test_sharpe_known_returns_matches_formula():
    r = [0.01, -0.01, 0.02]
    mean, sd = 0.02 / 3, math.sqrt(((0.01 - 0.02 / 3) ** 2 + (-0.01 - 0.02 / 3) ** 2 + (0.02 - 0.02 / 3) ** 2) / 2)
    assert sharpe(r, 252) == pytest.approx(mean / sd * math.sqrt(252))


def test_sharpe_constant_or_single_return_is_nan():
    assert math.isnan(sharpe([0.01, 0.01, 0.01], 252))
    assert math.isnan(sharpe([0.01], 252))


def test_max_drawdown_curve_with_two_falls_reports_largest():
    # peaks 120 then 130: falls 30/120 = 25% and 13/130 = 10%
    assert max_drawdown([100.0, 120.0, 90.0, 130.0, 117.0], initial=100.0) == (pytest.approx(0.25), pytest.approx(30.0))


def test_max_drawdown_initial_capital_counts_as_peak():
    assert max_drawdown([90.0, 95.0], initial=100.0) == (pytest.approx(0.10), pytest.approx(10.0))


def test_daily_returns_two_sessions_uses_last_bar_of_each_and_initial_capital():
    ts = pd.to_datetime(["2024-03-07 14:30", "2024-03-07 20:59", "2024-03-08 14:30", "2024-03-08 20:59"], utc=True)
    equity = pd.Series([101.0, 110.0, 100.0, 99.0], index=ts)
    assert daily_returns(equity, 100.0).tolist() == pytest.approx([0.10, 99.0 / 110.0 - 1.0])


def _fills(rows):
    ts = pd.Timestamp("2024-03-07 15:00", tz="UTC")
    return pd.DataFrame([{"ts": ts + pd.Timedelta(minutes=i), "ticker": t, "qty": q, "price": p, "fee": f,
                          "slippage": 0.0, "notional": abs(q) * p, "row": i} for i, (t, q, p, f) in enumerate(rows)])


def test_round_trips_flip_splits_fee_pro_rata_between_trades():
    # long 100 @10 (fee 1), flip -200 @11 (fee 2: 1 closes the long, 1 opens the short), cover +100 @9 (fee 1)
    trades = round_trips(_fills([("AAA", 100, 10.0, 1.0), ("AAA", -200, 11.0, 2.0), ("AAA", 100, 9.0, 1.0)]))
    assert trades["side"].tolist() == [1, -1]
    assert trades["shares"].tolist() == [100, 100]
    assert trades["pnl"].tolist() == pytest.approx([100 * 1 - 2.0, 100 * 2 - 2.0])
    assert trades["closed"].all()


def test_round_trips_open_trade_valued_at_mark_and_tickers_kept_apart():
    trades = round_trips(_fills([("AAA", 10, 10.0, 0.0), ("BBB", -5, 20.0, 0.5), ("AAA", -10, 12.0, 0.0)]),
                         marks={"BBB": 18.0})
    by = trades.set_index("ticker")
    assert by.loc["AAA", "closed"] and by.loc["AAA", "pnl"] == pytest.approx(20.0)
    assert not by.loc["BBB", "closed"] and by.loc["BBB", "pnl"] == pytest.approx(5 * 2.0 - 0.5)
    assert pd.isna(by.loc["BBB", "exit_ts"])


def _two_ticker_result(fee_bps=0.0, slippage_bps=0.0):
    ts = pd.date_range("2024-03-07 14:30", periods=3, freq="1min", tz="UTC")
    preds = pd.DataFrame({"ticker": ["AAA"] * 3 + ["BBB"] * 3, "ts": list(ts) * 2, "probability": 0.5,
                          "close": [10.0, 11.0, 12.0, 20.0, 19.0, 18.0], "volatility": 0.001})
    return run_backtest(preds, BacktestConfig(initial_capital=1_000.0, fee_bps=fee_bps, slippage_bps=slippage_bps))


def test_buy_and_hold_equal_capital_whole_shares_marked_at_close():
    equity, fills, trades = buy_and_hold(_two_ticker_result())
    # 500 per ticker: 50 AAA @10, 25 BBB @20 -> +50 * 2 - 25 * 2 = +50 at the end
    assert fills.set_index("ticker")["qty"].to_dict() == {"AAA": 50, "BBB": 25}
    assert equity.tolist() == pytest.approx([1000.0, 1000.0 + 50 - 25, 1000.0 + 100 - 50])
    assert trades["pnl"].tolist() == pytest.approx([100.0, -50.0])


def test_buy_and_hold_pays_entry_fee_and_slippage():
    equity, fills, _ = buy_and_hold(_two_ticker_result(fee_bps=10.0, slippage_bps=100.0))
    aaa = fills.set_index("ticker").loc["AAA"]
    assert aaa["price"] == pytest.approx(10.1) and aaa["qty"] == 49  # 500 // (10.1 * 1.001)
    assert aaa["fee"] == pytest.approx(49 * 10.1 * 0.001)
    assert equity.iloc[0] == pytest.approx(1000.0 - fills["slippage"].sum() - fills["fee"].sum())


def test_strategy_metrics_flat_strategy_has_zero_pnl_and_no_trades():
    metrics, trades = strategy_metrics(_two_ticker_result())
    assert (metrics.pnl, metrics.trades, metrics.fills, metrics.turnover, metrics.max_drawdown) == (0.0, 0, 0, 0.0, 0.0)
    assert math.isnan(metrics.hit_rate) and math.isnan(metrics.sharpe_daily)
    assert trades.empty


def test_strategy_metrics_trade_pnls_sum_to_total_pnl():
    rng = np.random.default_rng(5)
    ts = pd.date_range("2024-03-07 14:30", periods=200, freq="1min", tz="UTC")
    preds = pd.DataFrame({"ticker": "AAA", "ts": ts, "probability": rng.random(200),
                          "close": np.round(50 + np.cumsum(rng.normal(0, 0.03, 200)), 2), "volatility": 0.001})
    result = run_backtest(preds)
    metrics, trades = strategy_metrics(result)
    assert metrics.trades > 5
    assert trades["pnl"].sum() == pytest.approx(metrics.pnl, abs=1e-6)
    assert metrics.costs == pytest.approx(result.fills["fee"].sum() + result.fills["slippage"].sum())
    assert metrics.turnover == pytest.approx(result.fills["notional"].sum() / result.config.initial_capital)


def test_write_report_writes_table_png_and_csvs(tmp_path):
    report = write_report(_two_ticker_result(), tmp_path / "out")
    assert report.files["equity_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = report.files["report"].read_text()
    assert text.splitlines()[0].split() == ["metric", "strategy", "buy", "&", "hold"]
    assert "Sharpe (daily, x sqrt 252)" in text and "costs (fees + slippage)" in text
    assert pd.read_csv(report.files["equity_csv"]).columns.tolist() == ["ts", "strategy", "buy_and_hold"]
    assert text.strip() == metrics_table(report.strategy, report.benchmark)
