"""A pure-Python reference of the C++ executor (hft_exec), written from its documented rules.

This is a test oracle, not production code: it favours plain, readable Python over speed and keeps its state
in the most obvious form (dicts and lists, equity and gross recomputed from scratch instead of maintained
incrementally). The rules come from the comments in execution/include/hft_exec/*.hpp:

* input validation (types.hpp ``Reason``): unknown instrument, probability outside [0, 1] (or NaN),
  price NaN / infinite / <= 0 / above 1e7 currency units, volatility NaN / infinite / negative, bar time not
  after the instrument's last bar (duplicate), then conversion to integer ticks (a price that rounds to 0
  ticks is invalid), staleness (recv - ts above the maximum age) and the price band around the last trade;
  stale and out-of-band predictions still count as "seen" for the duplicate rule.
* accepted market data: a new UTC day (by bar time) resets the day's starting equity and lifts a
  daily-loss halt; the instrument is marked at the new price; the signal moves with hysteresis.
* kill switch (a halt() request) and daily loss limit (day PnL <= -limit) engage before the order decision,
  cancel every working order and refuse every later accepted prediction with the halt reason.
* strategy.hpp: target = signal x volatility-scaled size (capped at max_position, whole lots); the order is
  target - (position + working), skipped when the side is kept and the change is below the rebalance
  fraction; a marketable limit price moved against us by the collar.
* risk.hpp: checks in order max order notional, max position, max gross notional (only orders that add
  exposure), open orders per instrument, token bucket (consulted last: a refused order spends no token).
* exchange.hpp (paper exchange): an order arrives latency_ns after it was sent and executes at the first
  market price (of an accepted prediction for its instrument) at or after arrival, moved against it by the
  slippage, when that is within its limit; oldest arrival first (then lowest order id); at most
  max_fill_qty shares per instrument per market update; fee = fee_bps of the fill's notional + fee_per_share
  per share.
* accounting in integer ticks x shares: cash -= signed qty x fill price + fee; equity = cash + sum of
  position x last price; gross = sum |position + working| x last price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TICKS = 10_000  # ticks per currency unit
TICK = 1 / TICKS  # currency units per tick (C++ kUnitsPerTick): scale factors multiply, as in C++
BPS = 1e-4  # a basis point as a fraction (C++ kPerBasisPoint)
MAX_PRICE = 1e7  # currency units
DAY_NS = 86_400 * 10**9

HOLD, ORDER, REJECT = 0, 1, 2

# Same order as hft_exec.REASONS (the enum's stable codes).
REASONS = (
    "none",
    "invalid_probability",
    "invalid_price",
    "invalid_volatility",
    "unknown_instrument",
    "duplicate_prediction",
    "stale_prediction",
    "price_band",
    "kill_switch",
    "daily_loss_limit",
    "max_order_notional",
    "max_position",
    "max_gross_notional",
    "order_rate",
    "too_many_open_orders",
    "future_bar_time",
    "venue_rejected",
    "venue_unavailable",
)
R = {name: code for code, name in enumerate(REASONS)}


def llround(x: float) -> int:
    """C's llround: to nearest, halves away from zero (Python's round() goes to even)."""
    a = abs(x)
    whole = math.floor(a)
    n = whole + (1 if a - whole >= 0.5 else 0)  # a - floor(a) is exact for doubles
    return n if x >= 0 else -n


def divide(a: float, b: float) -> float:
    """IEEE division (x / 0 is +-inf), as C++ does it."""
    if b == 0.0:
        return math.copysign(math.inf, a) if a != 0 else math.nan
    return a / b


@dataclass
class Config:
    # strategy
    enter_long: float = 0.55
    exit_long: float = 0.52
    enter_short: float = 0.45
    exit_short: float = 0.48
    risk_per_trade: float = 20.0
    min_volatility: float = 0.0005
    lot: int = 1
    rebalance_fraction: float = 0.25
    limit_collar_bps: float = 50.0
    # risk
    max_position: int = 1_000
    max_gross_notional: float = 1.0e6
    max_order_notional: float = 1.0e5
    orders_per_second: float = 50.0
    order_burst: float = 20.0
    max_prediction_age_ns: int = 120 * 10**9
    max_future_ns: int = 5 * 10**9
    price_band: float = 0.10
    daily_loss_limit: float = 10_000.0
    max_open_orders: int = 4
    # paper exchange
    latency_ns: int = 100_000
    fee_bps: float = 0.5
    fee_per_share: float = 0.0
    slippage_bps: float = 1.0
    max_fill_qty: int = 0
    max_instruments: int = 1_024

    STRATEGY = ("enter_long", "exit_long", "enter_short", "exit_short", "risk_per_trade", "min_volatility",
                "lot", "rebalance_fraction", "limit_collar_bps")
    RISK = ("max_position", "max_gross_notional", "max_order_notional", "orders_per_second", "order_burst",
            "max_prediction_age_ns", "max_future_ns", "price_band", "daily_loss_limit", "max_open_orders")
    EXCHANGE = ("latency_ns", "fee_bps", "fee_per_share", "slippage_bps", "max_fill_qty")

    def to_cpp(self):
        """The same configuration as an hft_exec.ExecutorConfig."""
        import hft_exec

        cfg = hft_exec.ExecutorConfig()
        strategy, risk, exchange = cfg.strategy, cfg.risk, cfg.exchange
        for name in self.STRATEGY:
            setattr(strategy, name, getattr(self, name))
        for name in self.RISK:
            setattr(risk, name, getattr(self, name))
        for name in self.EXCHANGE:
            setattr(exchange, name, getattr(self, name))
        cfg.strategy, cfg.risk, cfg.exchange = strategy, risk, exchange  # pybind returns copies
        cfg.max_instruments = self.max_instruments
        return cfg


# ----------------------------------------------------------------------------------------------- strategy


def next_signal(current: int, p: float, c: Config) -> int:
    """Hysteresis: enter past an entry threshold, leave only back past the exit threshold."""
    if p >= c.enter_long:
        return 1
    if p <= c.enter_short:
        return -1
    if current > 0 and p < c.exit_long:
        return 0
    if current < 0 and p > c.exit_short:
        return 0
    return current


def target_size(price_ticks: int, volatility: float, c: Config) -> int:
    """risk_per_trade / (price x max(vol, min_vol)) shares, capped at max_position, down to whole lots."""
    vol = max(volatility, c.min_volatility)
    shares = divide(c.risk_per_trade, (price_ticks * TICK) * vol)
    capped = min(shares, float(c.max_position))
    lot = max(c.lot, 1)
    return max(math.floor(capped / lot), 0) * lot


def order_quantity(current: int, target: int, c: Config) -> int:
    delta = target - current
    same_side = (current > 0 and target > 0) or (current < 0 and target < 0)
    if same_side and abs(float(delta)) < c.rebalance_fraction * abs(float(target)):
        return 0
    return delta


def limit_price(price_ticks: int, buy: bool, c: Config) -> int:
    collar = math.ceil(float(price_ticks) * c.limit_collar_bps * BPS)
    return max(price_ticks + (collar if buy else -collar), 1)


# --------------------------------------------------------------------------------------------------- risk


class TokenBucket:
    """rate tokens per second up to burst; starts full; time going backwards refills nothing."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst, self.tokens = rate, burst, burst
        self.last: int | None = None

    def try_take(self, now: int) -> bool:
        if self.last is None or now > self.last:
            if self.last is not None:
                self.tokens = min(self.burst, self.tokens + self.rate * float(now - self.last) * 1e-9)
            self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


# --------------------------------------------------------------------------------------------- the book


@dataclass
class Order:
    id: int
    instrument: int
    qty: int  # signed, buy > 0
    limit: int
    arrive_ns: int
    slot: int  # where the order sits in its instrument's max_open_orders slots
    filled: int = 0  # signed

    @property
    def remaining(self) -> int:  # signed
        return self.qty - self.filled

    @property
    def buy(self) -> bool:
        return self.qty > 0


@dataclass
class Instrument:
    last_ts: int | None = None  # bar time of the last prediction seen (incl. stale / out of band)
    band_candidate: int = 0  # the last print refused by the price band (0: none)
    last: int = 0  # last accepted price, ticks
    position: int = 0
    signal: int = 0
    slots: list = field(default_factory=list)  # Order or None, max_open_orders of them

    @property
    def orders(self) -> list[Order]:
        return [o for o in self.slots if o is not None]

    @property
    def working(self) -> int:
        return sum(o.remaining for o in self.orders)


class ReferenceExecutor:
    def __init__(self, config: Config, instruments: int):
        self.c = config
        self.n = min(instruments, config.max_instruments)
        self.inst = [Instrument(slots=[None] * config.max_open_orders) for _ in range(self.n)]
        self.bucket = TokenBucket(config.orders_per_second, config.order_burst)
        self.cash = 0
        self.fees = 0
        self.next_order_id = 1
        self.day: int | None = None
        self.day_start_equity = 0
        self.halt_reason = "none"
        self.halt_requested = False
        self.counters = {"predictions": 0, "orders": 0, "fills": 0, "rejections": 0,
                         "by_reason": {name: 0 for name in REASONS[1:]}}

    # ------------------------------------------------------------------------------------------ queries

    @property
    def equity(self) -> int:
        return self.cash + sum(s.position * s.last for s in self.inst)

    @property
    def gross(self) -> int:
        return sum(abs(s.position + s.working) * s.last for s in self.inst)

    @property
    def day_pnl(self) -> int:
        return self.equity - self.day_start_equity

    @property
    def halted(self) -> bool:
        return self.halt_reason != "none" or self.halt_requested

    def position(self, i: int) -> int:
        return self.inst[i].position if i < self.n else 0

    def working(self, i: int) -> int:
        return self.inst[i].working if i < self.n else 0

    def open_orders(self, i: int) -> int:
        return len(self.inst[i].orders) if i < self.n else 0

    def last_price(self, i: int) -> int:
        return self.inst[i].last if i < self.n else 0

    def signal(self, i: int) -> int:
        return self.inst[i].signal if i < self.n else 0

    # ---------------------------------------------------------------------------------------- operator

    def halt(self) -> None:
        self.halt_requested = True

    def resume(self, now: int) -> None:
        self.halt_requested = False
        self.halt_reason = "none"

    # ---------------------------------------------------------------------------------------- decisions

    def _reject(self, reason: str, target: int):
        self.counters["rejections"] += 1
        self.counters["by_reason"][reason] += 1
        return (REJECT, R[reason], 0, 0, 0, target)

    def _validate(self, ts: int, recv: int, i: int, p: float, price: float, vol: float):
        """The reason the input is rejected, or None; stale and out-of-band bars are marked as seen."""
        if i >= self.n:
            return "unknown_instrument"
        s = self.inst[i]
        if not (0.0 <= p <= 1.0):  # NaN fails every comparison
            return "invalid_probability"
        if not (0.0 < price <= MAX_PRICE):  # NaN and infinities included
            return "invalid_price"
        if not (vol >= 0.0 and math.isfinite(vol)):
            return "invalid_volatility"
        if s.last_ts is not None and ts <= s.last_ts:
            return "duplicate_prediction"
        if llround(price * TICKS) <= 0:
            return "invalid_price"
        if recv - ts > self.c.max_prediction_age_ns:
            s.last_ts = ts
            return "stale_prediction"
        if ts - recv > self.c.max_future_ns:
            return "future_bar_time"
        px = llround(price * TICKS)

        def outside(ref: int) -> bool:
            return ref > 0 and float(abs(px - ref)) > self.c.price_band * float(ref)

        # a print outside the band is refused unless it confirms the previous refused one (a real gap)
        if outside(s.last) and (s.band_candidate == 0 or outside(s.band_candidate)):
            s.last_ts = ts
            s.band_candidate = px
            return "price_band"
        s.band_candidate = 0
        return None

    def on_prediction(self, ts: int, recv: int, i: int, p: float, price: float, vol: float):
        """-> (action, reason code, order id, signed qty, limit ticks, target), like Executor.on_prediction."""
        self.counters["predictions"] += 1
        if self.halt_reason != "kill_switch" and self.halt_requested:  # first, even on bad input; overrides a loss halt
            self._engage_halt("kill_switch")
        bad = self._validate(ts, recv, i, p, price, vol)
        if bad is not None:
            return self._reject(bad, self.inst[i].position + self.inst[i].working if i < self.n else 0)

        s = self.inst[i]
        px = llround(price * TICKS)
        day = ts // DAY_NS
        if self.day is None or day > self.day:  # a new day: count PnL from here, lift the daily-loss halt
            self.day = day
            self.day_start_equity = self.equity
            if self.halt_reason == "daily_loss_limit":
                self.halt_reason = "none"
        s.last_ts = ts
        s.last = px
        s.signal = next_signal(s.signal, p, self.c)

        if self.halt_reason == "none" and self.day_pnl <= -llround(self.c.daily_loss_limit * TICKS):
            self._engage_halt("daily_loss_limit")

        target = s.signal * target_size(px, vol, self.c)
        current = s.position + s.working
        delta = order_quantity(current, target, self.c)
        decision = (HOLD, 0, 0, 0, 0, target)
        if self.halt_reason != "none":
            decision = self._reject(self.halt_reason, target)
        elif delta != 0:
            limit = limit_price(px, delta > 0, self.c)
            why = self._check(delta, limit, s, recv)
            if why is not None:
                decision = self._reject(why, target)
            else:
                slot = s.slots.index(None)
                order = Order(self.next_order_id, i, delta, limit, recv + self.c.latency_ns, slot)
                self.next_order_id += 1
                s.slots[slot] = order
                self.counters["orders"] += 1
                decision = (ORDER, 0, order.id, delta, limit, target)
        self._market(i, px, recv)  # working orders (not the new one, unless latency is 0) meet this price
        return decision

    def _check(self, qty: int, limit: int, s: Instrument, now: int):
        c = self.c
        if abs(float(qty)) * float(limit) * TICK > c.max_order_notional:
            return "max_order_notional"
        before = s.position + s.working
        after = before + qty
        if abs(after) > c.max_position:
            return "max_position"
        gross_after = float(self.gross - abs(before) * s.last + abs(after) * s.last) * TICK
        if abs(after) > abs(before) and gross_after > c.max_gross_notional:
            return "max_gross_notional"
        if len(s.orders) >= c.max_open_orders:
            return "too_many_open_orders"
        if not self.bucket.try_take(now):
            return "order_rate"
        return None

    def _engage_halt(self, reason: str) -> None:
        self.halt_reason = reason
        for s in self.inst:  # cancel everything still working
            s.slots = [None] * len(s.slots)

    # ---------------------------------------------------------------------------------- paper exchange

    def execution_price(self, buy: bool, market: int) -> int:
        slip = llround(float(market) * self.c.slippage_bps * BPS)
        return max(market + (slip if buy else -slip), 1)

    def fee(self, qty: int, price: int) -> int:
        return llround(float(qty) * float(price) * self.c.fee_bps * BPS + float(qty) * self.c.fee_per_share * TICKS)

    def _market(self, i: int, px: int, now: int) -> None:
        s = self.inst[i]
        liquidity = self.c.max_fill_qty if self.c.max_fill_qty > 0 else math.inf
        while liquidity > 0:
            def marketable(o: Order) -> bool:
                fill_px = self.execution_price(o.buy, px)
                return fill_px <= o.limit if o.buy else fill_px >= o.limit

            ready = [o for o in s.orders if o.arrive_ns <= now and marketable(o)]
            if not ready:
                return
            o = min(ready, key=lambda o: (o.arrive_ns, o.id))  # oldest arrival, then first sent
            shares = min(abs(o.remaining), liquidity)
            fill_px = self.execution_price(o.buy, px)
            fee = self.fee(shares, fill_px)
            signed = shares if o.buy else -shares
            liquidity -= shares
            o.filled += signed
            s.position += signed
            self.cash -= signed * fill_px + fee
            self.fees += fee
            self.counters["fills"] += 1
            if o.remaining == 0:
                s.slots[o.slot] = None
