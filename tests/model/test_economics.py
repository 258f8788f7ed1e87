"""Economic evaluation: predictions traded through the C++ executor after costs, thresholds from validation
data only, buy-and-hold at matched exposure, intervals by session and by trade."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hft.backtest.engine import BacktestConfig, run_backtest
from hft.backtest.metrics import buy_and_hold, buy_and_hold_holdings, gross_exposure
from hft.features.definitions import FeatureSpec
from hft.model.economics import LEVELS, Thresholds, choose_thresholds, economic_evaluation, trade_holdout, trading_frame

SPEC = FeatureSpec()
COSTS = BacktestConfig(fee_bps=0.5, slippage_bps=1.0, latency_ns=100_000)


def market(first: str, sessions: int, tickers=("AAA", "BBB"), seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    """Feature rows as training has them (ticker, ts, date, close, the volatility feature): a random walk
    per ticker, 1-minute bars of whole New York sessions, per-bar volatility 0.001."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(first, periods=sessions)
    frames = []
    for t in tickers:
        ts = pd.DatetimeIndex([d + pd.Timedelta(hours=14, minutes=30 + m) for d in days for m in range(390)], tz="UTC")
        close = 100.0 * np.exp(np.cumsum(rng.normal(drift, 0.001, len(ts))))
        frames.append(pd.DataFrame({"ticker": t, "ts": ts, "date": ts.date, "close": np.round(close, 4)}))
    rows = pd.concat(frames).sort_values(["ts", "ticker"], kind="stable").reset_index(drop=True)
    rows[SPEC.volatility_feature] = 0.001 / SPEC.per_bar_volatility(1.0)
    return rows


def oracle(rows: pd.DataFrame, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Knows the move from the next bar's close (where an order decided now fills) to 5 bars on."""
    ahead = rows.groupby("ticker")["close"].shift(-5) / rows.groupby("ticker")["close"].shift(-1) - 1.0
    p = 0.5 + 0.3 * np.sign(ahead.fillna(0.0).to_numpy())
    return np.clip(p + np.random.default_rng(seed).normal(0.0, noise, len(p)), 0.0, 1.0)


def coin(rows: pd.DataFrame, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(len(rows))


def test_trading_frame_gives_the_executor_the_streaming_jobs_volatility():
    rows = market("2024-01-02", 1)
    frame = trading_frame(rows, np.full(len(rows), 0.7))
    assert list(frame.columns) == ["ticker", "ts", "probability", "close", "volatility"]
    assert frame["volatility"].to_numpy() == pytest.approx(0.001)
    with pytest.raises(ValueError, match="close"):
        trading_frame(rows.drop(columns=["close"]), np.zeros(len(rows)))


def test_thresholds_are_recentred_quantiles_chosen_on_validation_and_the_holdout_changes_nothing():
    valid, hold = market("2024-01-02", 4, seed=1), market("2024-02-01", 4, seed=2)
    p_valid = 0.3 + 0.2 * oracle(valid, noise=0.1)  # centred near 0.4, not 0.5: a model with its own scale
    th = choose_thresholds(valid, p_valid, COSTS)
    assert th is not None and th.level in LEVELS
    assert th.center == pytest.approx(np.median(p_valid))
    assert th.enter == pytest.approx(np.quantile(np.abs(p_valid - th.center), th.level))
    assert th.exit == pytest.approx(th.enter / 2)
    s = th.strategy()
    assert s["enter_short"] < s["exit_short"] < 0.5 < s["exit_long"] < s["enter_long"]
    assert th.signal(np.array([th.center])) == pytest.approx([0.5])
    # the level kept is the one whose validation backtest earned most after costs
    for level in LEVELS:
        e = float(np.quantile(np.abs(p_valid - th.center), level))
        other = Thresholds(th.center, e, e / 2, level, float("nan"))
        result = run_backtest(trading_frame(valid, other.signal(p_valid)), BacktestConfig(
            fee_bps=0.5, slippage_bps=1.0, latency_ns=100_000, strategy=other.strategy()))
        assert result.equity.iloc[-1] - result.config.initial_capital <= th.validation_pnl + 1e-6
    # two different holdouts: the same thresholds (they come from validation data only)
    a = economic_evaluation(valid, {"model": p_valid}, hold, {"model": oracle(hold)}, COSTS, resamples=50)
    b = economic_evaluation(valid, {"model": p_valid}, market("2024-03-01", 3, seed=3),
                            {"model": coin(market("2024-03-01", 3, seed=3))}, COSTS, resamples=50)
    assert a.model.thresholds == b.model.thresholds == th


def test_an_edge_that_pays_its_costs_survives_and_a_coin_does_not():
    valid, hold = market("2024-01-02", 5, seed=3), market("2024-02-01", 8, seed=4)
    report = economic_evaluation(valid, {"model": oracle(valid, 0.05), "coin": coin(valid), "constant": np.full(len(valid), 0.6)},
                                 hold, {"model": oracle(hold, 0.05, seed=1), "coin": coin(hold, 1), "constant": np.full(len(hold), 0.6)},
                                 COSTS, resamples=300)
    model, noise = report.results["model"], report.results["coin"]
    assert report.never_trades == ["constant"] and list(report.results) == ["model", "coin"]
    assert model.survives_costs and model.daily_pnl.low > 0 and model.sessions == 8
    assert model.net_pnl == pytest.approx(model.gross_pnl - model.costs) and model.costs > 0
    assert model.hit_rate.low > 0.5 and model.pnl_per_trade.low > 0 and model.trades > 100
    assert model.sharpe.low <= model.sharpe.value <= model.sharpe.high
    assert not noise.survives_costs and noise.net_pnl < 0 and noise.net_pnl < noise.gross_pnl
    assert report.verdict().startswith("economics (fees 0.5 bps + slippage 1 bps per fill): the edge SURVIVES costs")
    assert "coin" in report.table() and "never trade" in report.table()
    m = report.metrics()
    assert m["econ_survives_costs"] == 1.0 and m["econ_coin_net_pnl"] == noise.net_pnl
    # nothing to gain but costs to pay: the verdict says so
    bad = economic_evaluation(valid, {"model": coin(valid)}, hold, {"model": coin(hold, 2)}, COSTS, resamples=100)
    assert not bad.model.survives_costs
    assert ("does NOT survive" in bad.verdict()) == (bad.model.gross_pnl > 0) != ("no edge" in bad.verdict())
    assert bad.model.thresholds.validation_pnl < 0 and "no threshold earned after costs on validation" in bad.verdict()
    assert "on validation" not in report.verdict()


def test_return_on_gross_exposure_puts_a_small_long_position_level_with_buy_and_hold():
    """Always long: the strategy holds a sliver of the capital, buy-and-hold all of it; per unit of gross
    exposure they earn the same market move."""
    hold = market("2024-01-02", 3, tickers=("AAA",), seed=5, drift=0.0002)
    always_long = Thresholds(center=0.5, enter=0.1, exit=0.05, level=0.5, validation_pnl=0.0)
    e = trade_holdout("long", hold, np.full(len(hold), 0.9), always_long, COSTS, resamples=50)
    result = run_backtest(trading_frame(hold, always_long.signal(np.full(len(hold), 0.9))),
                          BacktestConfig(fee_bps=0.5, slippage_bps=1.0, latency_ns=100_000, strategy=always_long.strategy()))
    exposure = (result.positions["AAA"].abs() * result.predictions.set_index("ts")["close"].reindex(
        result.predictions["ts"]).to_numpy()).mean()
    assert e.mean_gross_exposure == pytest.approx(exposure, rel=1e-9)
    assert e.mean_gross_exposure < 0.1 * result.config.initial_capital  # a sliver of the capital
    bh_equity, _, _ = buy_and_hold(result)
    bh_exposure = gross_exposure(result, buy_and_hold_holdings(result)).mean()
    assert bh_exposure > 0.9 * result.config.initial_capital
    assert e.buy_and_hold_return_on_gross == pytest.approx((bh_equity.iloc[-1] - 1e6) / bh_exposure)
    assert e.matched_buy_and_hold_pnl == pytest.approx(e.buy_and_hold_return_on_gross * e.mean_gross_exposure)
    assert e.return_on_gross == pytest.approx(e.buy_and_hold_return_on_gross, abs=2e-3)
