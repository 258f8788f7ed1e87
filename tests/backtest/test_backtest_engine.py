"""The replay engine on small synthetic predictions: fill timing, costs, accounting, blocks, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hft.backtest.engine as engine
from hft.backtest.engine import BacktestConfig, BacktestInputError, run_backtest

T0 = pd.Timestamp("2024-03-07 14:30", tz="UTC")


def frame(closes, probs, ticker="AAA", vol=0.001, start=T0):
    n = len(closes)
    return pd.DataFrame({"ticker": ticker, "ts": start + pd.to_timedelta(np.arange(n), unit="min"),
                         "probability": probs, "close": closes, "volatility": vol})


def random_predictions(n_bars=300, tickers=("AAA", "BBB", "CCC"), seed=1):
    rng = np.random.default_rng(seed)
    parts = []
    for i, t in enumerate(tickers):
        closes = np.round(50 + 20 * i + np.cumsum(rng.normal(0, 0.05, n_bars)), 2)
        parts.append(frame(closes, rng.random(n_bars), ticker=t, vol=rng.uniform(0.0005, 0.002, n_bars)))
    return pd.concat(parts, ignore_index=True)


def test_run_backtest_long_signal_fills_at_next_close_with_fee_and_slippage():
    # p = 0.9 on bar 0: target 50 / (100 * 0.001) = 500 shares; the order executes at bar 1's close 100.2
    # plus 1 bp slippage (100.21) with a 0.5 bp fee rounded to a tick (2.5053); bar 2's target (495) is
    # within the rebalance fraction, so nothing more trades.
    result = run_backtest(frame([100.0, 100.2, 101.0], [0.9, 0.9, 0.9]),
                          BacktestConfig(fee_bps=0.5, slippage_bps=1.0, strategy={"risk_per_trade": 50.0}))
    fills = result.fills
    assert len(fills) == 1
    fill = fills.iloc[0]
    # stamped at bar 1's end: its close exists only then (times are bar ends, as for the live executor)
    assert (fill["ts"], fill["qty"], fill["price"], fill["fee"]) == (T0 + pd.Timedelta(minutes=2), 500, 100.21, 2.5053)
    assert fill["slippage"] == pytest.approx(500 * 0.01)
    pnl = result.pnl.to_numpy()
    assert pnl == pytest.approx([0.0, -5.0 - 2.5053, 500 * (101 - 100.21) - 2.5053], abs=1e-9)
    assert result.positions["AAA"].tolist() == [0, 500, 500]
    assert result.executor_equity == pytest.approx(pnl[-1], abs=1e-9)


def test_run_backtest_price_beyond_limit_collar_order_waits_for_next_bar():
    # Limit = 100 + 50 bp collar = 100.5: bar 1 (101 + slippage) is beyond it, bar 2 (100.3) is not.
    result = run_backtest(frame([100.0, 101.0, 100.3], [0.9, 0.9, 0.9]),
                          BacktestConfig(slippage_bps=1.0, strategy={"risk_per_trade": 50.0}))
    assert result.fills[["ts", "qty", "price"]].values.tolist() == [[T0 + pd.Timedelta(minutes=3), 500, 100.31]]


def test_run_backtest_order_on_last_bar_never_fills():
    result = run_backtest(frame([100.0, 100.0], [0.5, 0.9]))
    assert result.counters["orders"] == 1 and result.fills.empty
    assert result.positions["AAA"].tolist() == [0, 0]


def test_run_backtest_several_tickers_equity_matches_positions_and_cash():
    preds = random_predictions()
    result = run_backtest(preds, BacktestConfig())
    assert len(result.fills) > 20
    closes = preds.pivot(index="ts", columns="ticker", values="close")
    closes.index = closes.index + pd.Timedelta(minutes=1)  # the equity curve is stamped at bar ends
    closes = closes.reindex(result.equity.index).ffill()
    marked = (result.positions * closes).sum(axis=1) + result.cash + result.config.initial_capital
    np.testing.assert_allclose(result.equity.to_numpy(), marked.to_numpy(), atol=1e-6)
    net = result.fills.groupby("ticker")["qty"].sum().reindex(result.tickers, fill_value=0)
    assert result.final_positions == net.to_dict()
    assert result.equity.iloc[-1] - result.config.initial_capital == pytest.approx(result.executor_equity)


def test_run_backtest_small_blocks_give_same_result_as_one_block(monkeypatch):
    preds = random_predictions(n_bars=120)
    whole = run_backtest(preds)
    monkeypatch.setattr(engine, "BLOCK", 7)
    blocks = run_backtest(preds)
    pd.testing.assert_series_equal(whole.equity, blocks.equity)
    pd.testing.assert_frame_equal(whole.fills, blocks.fills)
    np.testing.assert_array_equal(whole.events, blocks.events)
    np.testing.assert_array_equal(whole.event_prediction, blocks.event_prediction)


def test_run_backtest_shuffled_input_replays_in_time_order():
    preds = random_predictions(n_bars=60)
    ordered = run_backtest(preds)
    shuffled = run_backtest(preds.sample(frac=1.0, random_state=3))
    pd.testing.assert_series_equal(ordered.equity, shuffled.equity)
    assert ordered.predictions["ts"].is_monotonic_increasing


def test_run_backtest_rows_without_volatility_are_dropped_not_replayed():
    preds = frame([100.0, 100.5, 101.0, 101.5], [0.9] * 4, vol=[np.nan, np.nan, 0.001, 0.001])
    result = run_backtest(preds)
    assert len(result.predictions) == 2 and result.counters["predictions"] == 2
    assert result.equity.index[0] == T0 + pd.Timedelta(minutes=3)  # the end of the first bar replayed


def test_run_backtest_missing_column_raises_input_error():
    with pytest.raises(BacktestInputError, match="missing column.*volatility"):
        run_backtest(frame([100.0], [0.9]).drop(columns="volatility"))


def test_run_backtest_ticker_outside_instrument_list_raises_input_error():
    with pytest.raises(BacktestInputError, match="not in the instrument list: AAA"):
        run_backtest(frame([100.0], [0.9]), tickers=["BBB"])


def test_backtest_config_unknown_risk_setting_raises_value_error():
    with pytest.raises(ValueError, match="unknown risk setting 'max_positon'"):
        BacktestConfig(risk={"max_positon": 5}).executor_config()


def test_backtest_config_overrides_reach_executor_config():
    cfg = BacktestConfig(fee_bps=2.0, slippage_bps=0.0, strategy={"lot": 10}, risk={"max_position": 7}).executor_config()
    assert (cfg.exchange.fee_bps, cfg.exchange.slippage_bps, cfg.strategy.lot, cfg.risk.max_position) == (2.0, 0.0, 10, 7)


@pytest.mark.parametrize("interval, minutes", [("1m", 1), ("5m", 5)])
def test_backtest_decides_each_prediction_at_its_bar_end_like_the_live_executor(interval, minutes):
    from hft.backtest.engine import prediction_records, prepare_predictions
    from hft.schemas import Prediction

    preds = frame([100.0, 100.5], [0.9, 0.9])
    prepared, _ = prepare_predictions(preds)
    records = prediction_records(prepared, interval=interval)
    live = [Prediction("AAA", interval, int(ts.value // 1_000_000), 0.9, "1", None, 0).available_ns for ts in preds["ts"]]
    assert records["ts_ns"].tolist() == live
    assert records["ts_ns"][0] == (T0 + pd.Timedelta(minutes=minutes)).value
