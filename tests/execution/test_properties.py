"""Property tests: the C++ executor against the pure-Python reference (exec_reference), and journal recovery.

Random configurations and random sequences of predictions (valid and invalid probabilities, prices with
walks, jumps and bad values, volatilities, known and unknown instruments, bar times in order, duplicated,
out of order and stale) with occasional halt() / resume(); after every step the decision and the state of
both must agree.
"""

from __future__ import annotations

import math

import exec_reference as ref
import numpy as np
from exec_reference import Config, ReferenceExecutor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hft_exec

BAR_NS = 60 * 10**9
DAY_NS = 86_400 * 10**9
START_NS = 20_000 * DAY_NS + 13 * 3_600 * 10**9 + 30 * 60 * 10**9  # a weekday, 13:30 UTC
BASE_PRICES = (100.0, 37.2519, 2_513.5, 1.07)
NAN, INF = math.nan, math.inf
SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]

# ------------------------------------------------------------------------------------------- strategies


@st.composite
def configs(draw, recoverable: bool = False) -> Config:
    enter_long = draw(st.sampled_from([0.5, 0.55, 0.6, 0.7]))
    enter_short = draw(st.sampled_from([0.3, 0.4, 0.45, 0.5]))
    c = Config(
        enter_long=enter_long,
        exit_long=draw(st.sampled_from([enter_long, 0.52, 0.5, 0.45])),
        enter_short=enter_short,
        exit_short=draw(st.sampled_from([enter_short, 0.48, 0.5, 0.55])),
        risk_per_trade=draw(st.sampled_from([5.0, 50.0, 50.0, 500.0, 5_000.0])),
        min_volatility=draw(st.sampled_from([0.0, 0.0005, 0.01])),
        lot=draw(st.sampled_from([1, 1, 3, 10, 100])),
        rebalance_fraction=draw(st.sampled_from([0.0, 0.25, 0.9])),
        limit_collar_bps=draw(st.sampled_from([0.0, 10.0, 50.0, 200.0])),
        max_position=draw(st.sampled_from([0, 7, 100, 1_000, 1_000, 100_000])),
        max_gross_notional=draw(st.sampled_from([0.0, 2_000.0, 50_000.0, 1.0e9, 1.0e9, 1.0e9, 1.0e9])),
        max_order_notional=draw(st.sampled_from([0.0, 1_000.0, 20_000.0, 1.0e9, 1.0e9, 1.0e9, 1.0e9])),
        orders_per_second=draw(st.sampled_from([0.0, 0.005, 0.05, 50.0, 50.0])),
        order_burst=draw(st.sampled_from([0.0, 1.0, 2.5, 20.0, 20.0])),
        max_prediction_age_ns=draw(st.sampled_from([10**9, 120 * 10**9, 3_600 * 10**9])),
        max_future_ns=draw(st.sampled_from([0, 5 * 10**9, 10**12])),
        price_band=draw(st.sampled_from([0.0, 0.01, 0.03, 0.1, 0.1, 0.1, 0.5])),
        daily_loss_limit=draw(st.sampled_from([2.0, 25.0, 200.0, 10_000.0, 10_000.0, 10_000.0])),
        max_open_orders=draw(st.sampled_from([0, 1, 2, 4, 4])),
        latency_ns=draw(st.sampled_from([0, 100_000, 30 * 10**9, 90 * 10**9])),
        fee_bps=draw(st.sampled_from([0.0, 0.5, 3.0])),
        fee_per_share=draw(st.sampled_from([0.0, 0.0035])),
        slippage_bps=draw(st.sampled_from([0.0, 1.0, 7.5, 60.0])),
        max_fill_qty=draw(st.sampled_from([0, 0, 1, 5, 40])),
        max_instruments=draw(st.sampled_from([1_024, 1_024, 1, 2])),
    )
    if recoverable:  # the token bucket is not journaled: keep it from deciding anything after a restart
        c.orders_per_second, c.order_burst = 1.0e9, 1.0e9
    return c


def weighted(*choices):
    """One of several strategies, each drawn with its weight: a percentage die picks the strategy."""
    total = sum(w for w, _ in choices)

    def pick(die):
        for w, strategy in choices:
            if die < w:
                return strategy
            die -= w
        raise AssertionError(die)

    return st.integers(0, total - 1).flatmap(pick)


probabilities = weighted(
    (80, st.floats(0.0, 1.0)),
    (12, st.sampled_from([0.0, 1.0, 0.3, 0.45, 0.48, 0.5, 0.52, 0.55, 0.7, 0.95])),
    (8, st.sampled_from([NAN, -0.01, 1.0001, INF, -INF, -1e-300])),
)
volatilities = weighted(
    (80, st.floats(0.0, 0.03)),
    (12, st.sampled_from([0.0, 1e-4, 5e-4, 0.002, 0.01])),
    (8, st.sampled_from([NAN, -0.001, INF, -INF])),
)
# How the price moves from the instrument's previous one (a relative step), or a bad price outright.
price_moves = weighted(
    (85, st.floats(-0.02, 0.02)),
    (8, st.sampled_from([0.0, 0.04, -0.04, 0.15, -0.15, 0.6, -0.45])),  # jumps (some outside the band)
    (7, st.sampled_from(["zero", "negative", "inf", "-inf", "nan", "huge", "max", "subtick"])),
)
BAD_PRICES = {"zero": 0.0, "negative": -12.5, "inf": INF, "-inf": -INF, "nan": NAN, "huge": 1.0e7 * 1.000001,
              "max": 1.0e7, "subtick": 4.0e-5}
# How the bar time moves for the instrument: next bar, same bar (duplicate), an earlier bar, a bar tomorrow.
time_moves = weighted(
    (85, st.sampled_from(["next", "skip"])),
    (15, st.sampled_from(["same", "back", "tomorrow"])),
)
delays = weighted(  # recv_ns - ts_ns: small, negative (clock skew), or stale for some configs
    (90, st.integers(0, 3 * 10**9)),
    (10, st.sampled_from([0, -10**9, -10 * 10**9, 121 * 10**9, 4_000 * 10**9])),
)
# Instrument choice: 0..17 pick a registered instrument, 18 the first unregistered id, 19 a huge id.
instrument_choices = st.integers(0, 19)
predict_steps = st.tuples(st.just("predict"), instrument_choices, time_moves, delays, probabilities, price_moves,
                          volatilities)
steps = weighted((95, predict_steps), (5, st.tuples(st.sampled_from(["halt", "resume"]))))


class Market:
    """Turns drawn steps into concrete calls, tracking each instrument's bar time and price."""

    def __init__(self, registered: int):
        self.registered = registered
        self.ts = [START_NS] * (registered + 2)
        self.price = [BASE_PRICES[k % len(BASE_PRICES)] for k in range(len(self.ts))]
        self.now = START_NS

    def prediction(self, step) -> tuple:
        _, choice, time_move, delay, prob, move, vol = step
        k = choice % self.registered if choice < 18 else self.registered + (choice - 18)
        inst_id = k if choice < 19 else 4_000_000_000
        ts = self.ts[k]
        if time_move == "next":
            ts = self.ts[k] = ts + BAR_NS
        elif time_move == "skip":
            ts = self.ts[k] = ts + 7 * BAR_NS
        elif time_move == "tomorrow":
            ts = self.ts[k] = ts + DAY_NS
        elif time_move == "back":  # a late, out of order bar
            ts -= BAR_NS
        if isinstance(move, str):
            price = BAD_PRICES[move]
        else:  # around the instrument's base price; moves above 2% are spikes
            price = self.price[k] * (1.0 + move)
        self.now = ts + delay
        return (ts, self.now, inst_id, prob, price, vol)

    def copy(self) -> "Market":
        twin = Market(self.registered)
        twin.ts, twin.price, twin.now = list(self.ts), list(self.price), self.now
        return twin


def state(ex, instruments: int) -> dict:
    """Everything observable about an executor (C++ or reference)."""
    return {
        "cash": ex.cash,
        "equity": ex.equity,
        "fees": ex.fees,
        "gross": ex.gross,
        "day_pnl": ex.day_pnl,
        "halted": ex.halted,
        "halt_reason": ex.halt_reason,
        "next_order_id": ex.next_order_id,
        "instruments": [
            (ex.position(i), ex.working(i), ex.open_orders(i), ex.last_price(i), ex.signal(i))
            for i in range(instruments + 1)
        ],
    }


# ------------------------------------------------------------------------------------------------ tests


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=SLOW_OK)
@given(config=configs(), instruments=st.integers(1, 3), script=st.lists(steps, min_size=20, max_size=100))
def test_executor_random_sequences_match_reference(config, instruments, script):
    cpp = hft_exec.Executor(config.to_cpp(), instruments)
    ref = ReferenceExecutor(config, instruments)
    market = Market(min(instruments, config.max_instruments))
    for n, step in enumerate(script):
        if step[0] == "halt":
            cpp.halt()
            ref.halt()
        elif step[0] == "resume":
            cpp.resume(market.now)
            ref.resume(market.now)
        else:
            args = market.prediction(step)
            got = tuple(cpp.on_prediction(*args))
            want = ref.on_prediction(*args)
            assert got == want, f"step {n}: decision for {args}"
        assert state(cpp, instruments) == state(ref, instruments), f"step {n}: state after {step}"
    assert cpp.counters() == ref.counters


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=SLOW_OK)
@given(
    config=configs(recoverable=True),
    instruments=st.integers(1, 3),
    before=st.lists(steps, min_size=20, max_size=80),
    after=st.lists(steps, min_size=5, max_size=30),
)
def test_recover_replayed_journal_reproduces_state(config, instruments, before, after):
    live = hft_exec.Executor(config.to_cpp(), instruments)
    market = Market(min(instruments, config.max_instruments))
    journal = []
    halt_requested = False
    for step in before:
        apply(live, market, step)
        halt_requested = (halt_requested or step[0] == "halt") and step[0] != "resume"
        journal.append(hft_exec.drain_events(live))  # drained in pieces, as a journal writer would
    events = np.concatenate(journal)

    restored = hft_exec.Executor(config.to_cpp(), instruments)
    restored.recover(events)
    if halt_requested:  # an operator request is not an event until it takes effect: the operator re-issues it
        restored.halt()
    assert state(restored, instruments) == state(live, instruments)
    assert restored.counters()["predictions"] == 0

    # Carrying on from the same point, both decide alike (dedupe, signals, open orders, marks, day, halt).
    twin = market.copy()
    live_decisions = [apply(live, market, step) for step in after]
    restored_decisions = [apply(restored, twin, step) for step in after]
    assert restored_decisions == live_decisions
    assert state(restored, instruments) == state(live, instruments)

    # The recovered executor's own journal, appended, replays into the same state once more.
    again = hft_exec.Executor(config.to_cpp(), instruments)
    again.recover(np.concatenate([events, hft_exec.drain_events(restored)]))
    if restored.halted and restored.halt_reason == "none":
        again.halt()
    assert state(again, instruments) == state(restored, instruments)


def apply(ex, market: Market, step):
    """One drawn step on an executor: a prediction (-> its decision), halt() or resume()."""
    if step[0] == "halt":
        return ex.halt()
    if step[0] == "resume":
        return ex.resume(market.now)
    return tuple(ex.on_prediction(*market.prediction(step)))


@settings(max_examples=300, deadline=None, database=None)
@given(
    config=configs(),
    current=st.integers(-2_000, 2_000),
    target=st.integers(-2_000, 2_000),
    signal=st.sampled_from([-1, 0, 1]),
    p=st.floats(0.0, 1.0),
    price_ticks=st.integers(1, 10**11),
    volatility=st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 5e-324, 1e-300])),
)
def test_strategy_functions_random_inputs_match_reference(config, current, target, signal, p, price_ticks,
                                                           volatility):
    cpp = config.to_cpp().strategy
    assert hft_exec.next_signal(signal, p, cpp) == ref.next_signal(signal, p, config)
    assert hft_exec.order_quantity(current, target, cpp) == ref.order_quantity(current, target, config)
    assert hft_exec.target_size(price_ticks, volatility, cpp, config.max_position) == ref.target_size(
        price_ticks, volatility, config)
