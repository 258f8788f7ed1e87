"""Cross-check of the C++ executor replay against backtesting.py on a deterministic SMA signal.

Setup (both engines): one ticker, 1-minute closes on the 0.01 grid (exact in ticks), probability 0.9 when
the 5-bar SMA of the close is above the 20-bar SMA and 0.1 below (0.5, flat, before the slow SMA exists),
so the executor's signal is +1/-1 and, with ``risk_per_trade`` huge and ``max_position = 100``, its target is
always exactly +-100 shares; a wide limit collar makes every order marketable; zero slippage; ``fee_bps``
of notional per fill.

Fill timing: our order decided on bar t executes at bar t+1's CLOSE (the next prediction's price).
backtesting.py fills a market order placed in ``next()`` of bar t at bar t+1's OPEN (``trade_on_close=False``),
so it is fed bars whose Open (and High, Low) equal the Close. ``trade_on_close=True`` would fill at bar t's
close instead — one bar early — so it is NOT used. backtesting.py charges ``commission`` (a fraction) on
each side of each trade; our exchange charges ``fee_bps / 1e4`` of each fill's notional, the same total
(a flip of 200 shares = closing 100 + opening 100).

Tolerance: prices and fill quantities must agree exactly. Money may differ only by our fee rounding: the
paper exchange rounds each fill's fee to a whole tick (1e-4 currency units), an error of at most 0.5 tick
per fill, so the PnL after k fills may differ by at most ``k * 0.5e-4`` (+1e-6 for float summation in
backtesting.py); a round trip (at most two fills, each split pro rata) by at most 1e-4.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from hft.backtest.engine import BacktestConfig, run_backtest
from hft.backtest.metrics import round_trips

FAST, SLOW, SIZE, FEE_BPS = 5, 20, 100, 2.0
TICK = 1e-4


@pytest.fixture(scope="module")
def market():
    rng = np.random.default_rng(42)
    n = 390
    closes = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.0015, n))), 2)
    ts = pd.date_range("2024-03-07 14:30", periods=n, freq="1min", tz="UTC")
    s = pd.Series(closes)
    fast, slow = s.rolling(FAST).mean(), s.rolling(SLOW).mean()
    signal = np.where(slow.isna(), 0, np.where(fast > slow, 1, -1))
    probability = np.select([signal > 0, signal < 0], [0.9, 0.1], 0.5)
    return pd.DataFrame({"ts": ts, "close": closes, "signal": signal, "probability": probability})


@pytest.fixture(scope="module")
def ours(market):
    preds = market.assign(ticker="AAA", volatility=0.001)[["ticker", "ts", "probability", "close", "volatility"]]
    config = BacktestConfig(initial_capital=1_000_000.0, fee_bps=FEE_BPS, slippage_bps=0.0,
                            strategy={"risk_per_trade": 1e12, "limit_collar_bps": 5_000.0},
                            risk={"max_position": SIZE, "daily_loss_limit": 1e12})
    return run_backtest(preds, config)


@pytest.fixture(scope="module")
def theirs(market):
    from backtesting import Backtest, Strategy

    close = market["close"].to_numpy()
    data = pd.DataFrame({"Open": close, "High": close, "Low": close, "Close": close, "Volume": 1_000},
                        index=pd.DatetimeIndex(market["ts"].dt.tz_localize(None)))
    signal = market["signal"].to_numpy()

    class SmaFlip(Strategy):
        def init(self):
            self.sig = self.I(lambda: signal, name="signal")

        def next(self):
            delta = SIZE * int(self.sig[-1]) - self.position.size
            if delta > 0:
                self.buy(size=delta)
            elif delta < 0:
                self.sell(size=-delta)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = Backtest(data, SmaFlip, cash=1_000_000.0, commission=FEE_BPS / 1e4, trade_on_close=False,
                         finalize_trades=False).run()
    return stats


def _their_fills(stats, n_bars):
    """Net shares and price per bar from backtesting.py's closed and still-open trades."""
    trades = stats._trades
    open_trades = stats._strategy.trades
    rows = [(b, s, p) for b, s, p in zip(trades["EntryBar"], trades["Size"], trades["EntryPrice"])]
    rows += [(b, -s, p) for b, s, p in zip(trades["ExitBar"], trades["Size"], trades["ExitPrice"])]
    rows += [(t.entry_bar, t.size, t.entry_price) for t in open_trades]
    frame = pd.DataFrame(rows, columns=["bar", "qty", "price"])
    qty = frame.groupby("bar")["qty"].sum()
    price = frame.groupby("bar")["price"].agg(["min", "max"])
    assert (price["min"] == price["max"]).all()
    return qty[qty != 0], price["min"][qty != 0]


def test_crosscheck_sma_signal_fills_match_backtesting_py_exactly(market, ours, theirs):
    qty, price = _their_fills(theirs, len(market))
    bar_of = {ts + pd.Timedelta(minutes=1): i for i, ts in enumerate(market["ts"])}  # our times are bar ends
    mine = ours.fills.assign(bar=ours.fills["ts"].map(bar_of)).set_index("bar")
    assert len(mine) >= 10  # the signal flips often enough to test something
    assert mine.index.tolist() == qty.index.tolist()
    assert mine["qty"].tolist() == qty.astype(int).tolist()
    np.testing.assert_allclose(mine["price"].to_numpy(), price.to_numpy(), rtol=0, atol=1e-9)


def test_crosscheck_sma_signal_equity_matches_backtesting_py_within_fee_rounding(market, ours, theirs):
    their_pnl = theirs._equity_curve["Equity"].to_numpy() - 1_000_000.0
    my_pnl = ours.pnl.to_numpy()
    assert len(my_pnl) == len(their_pnl) == len(market)
    fills_so_far = np.searchsorted(np.sort(ours.fills["row"].to_numpy()), np.arange(len(market)), side="right")
    tolerance = fills_so_far * 0.5 * TICK + 1e-6
    assert np.all(np.abs(my_pnl - their_pnl) <= tolerance), np.max(np.abs(my_pnl - their_pnl) - tolerance)
    assert abs(my_pnl[-1] - (theirs["Equity Final [$]"] - 1_000_000.0)) <= tolerance[-1]
    assert my_pnl[-1] != 0.0


def test_crosscheck_sma_signal_round_trips_match_backtesting_py_trades(ours, theirs):
    trades = round_trips(ours.fills)
    closed = trades[trades["closed"]].reset_index(drop=True)
    their = theirs._trades
    assert len(closed) == len(their) == theirs["# Trades"]
    assert closed["side"].tolist() == np.sign(their["Size"]).astype(int).tolist()
    np.testing.assert_allclose(closed["pnl"].to_numpy(), their["PnL"].to_numpy(), rtol=0, atol=TICK + 1e-9)
    assert (closed["pnl"] > 0).mean() * 100 == pytest.approx(theirs["Win Rate [%]"])
