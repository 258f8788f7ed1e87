"""The executor's settings: strategy, risk limits and paper exchange, from ``HFT_EXEC_<NAME>`` variables.

One frozen dataclass, converted to the C++ configuration by :meth:`to_core`. Its defaults are the C++
core's own (``hft_exec::ExecutorConfig``, documented in ``execution/include/hft_exec/config.hpp``), read
from the module, so each default has one home; the values are listed below for reference.
Money amounts are in currency units, times in seconds; the C++ side works in integer ticks and nanoseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import hft_exec

#: The defaults are the C++ core's (execution/include/hft_exec/config.hpp), read once here: one home each.
_CORE = hft_exec.ExecutorConfig()
_S, _R, _X = _CORE.strategy, _CORE.risk, _CORE.exchange


@dataclass(frozen=True)
class ExecConfig:
    """Attributes (env ``HFT_EXEC_<NAME>``):

    Strategy: ``enter_long`` 0.55 / ``exit_long`` 0.52 and ``enter_short`` 0.45 / ``exit_short`` 0.48
    (probability thresholds with hysteresis); ``risk_per_trade`` 20 (target |position| x price x per-bar
    volatility, currency units); ``min_volatility`` 0.0005; ``lot`` 1 share; ``rebalance_fraction`` 0.25
    (size changes below this share of the target are not traded); ``limit_collar_bps`` 50 (marketable limit).

    Risk: ``max_position`` 1000 shares per ticker; ``max_gross_notional`` 1e6; ``max_order_notional`` 1e5;
    ``orders_per_second`` 50 and ``order_burst`` 20 (token bucket); ``max_prediction_age_s`` 120 (stale
    guard: arrival time minus bar time); ``price_band`` 0.10 (vs the last trade); ``daily_loss_limit`` 10000
    (halts for the rest of the UTC day); ``max_open_orders`` 4 per ticker.

    Paper exchange: ``latency_us`` 100; ``fee_bps`` 0.5; ``fee_per_share`` 0; ``slippage_bps`` 1;
    ``max_fill_qty`` 0 (shares per ticker per market update, 0 = unlimited: partial fills otherwise).

    Several venues: ``venues`` (empty: the one paper exchange above), comma-separated
    ``name=fee_bps/slippage_bps/latency_us[/max_fill_qty[/max_working_notional]]``, e.g.
    ``lit=0.5/1/100,cheap=0.1/0.5/500/0/50000``: paper venues behind the C++ router, which sends each order to
    the connected venue with the lowest cost (slippage + fees) whose working notional stays within its limit
    (``hft_exec/router.hpp``); events carry the venue's index in this list (:attr:`venue_names`).
    """

    enter_long: float = _S.enter_long
    exit_long: float = _S.exit_long
    enter_short: float = _S.enter_short
    exit_short: float = _S.exit_short
    risk_per_trade: float = _S.risk_per_trade
    min_volatility: float = _S.min_volatility
    lot: int = _S.lot
    rebalance_fraction: float = _S.rebalance_fraction
    limit_collar_bps: float = _S.limit_collar_bps
    max_position: int = _R.max_position
    max_gross_notional: float = _R.max_gross_notional
    max_order_notional: float = _R.max_order_notional
    orders_per_second: float = _R.orders_per_second
    order_burst: float = _R.order_burst
    max_prediction_age_s: float = _R.max_prediction_age_ns / 1e9
    price_band: float = _R.price_band
    daily_loss_limit: float = _R.daily_loss_limit
    max_open_orders: int = _R.max_open_orders
    latency_us: float = _X.latency_ns / 1e3
    fee_bps: float = _X.fee_bps
    fee_per_share: float = _X.fee_per_share
    slippage_bps: float = _X.slippage_bps
    max_fill_qty: int = _X.max_fill_qty
    venues: str = ""

    def __post_init__(self) -> None:
        self.venue_specs()  # a bad spec fails here, with what is wrong
        if not 0.0 <= self.enter_short <= self.exit_short <= 0.5 <= self.exit_long <= self.enter_long <= 1.0:
            raise ValueError(
                "thresholds must satisfy 0 <= enter_short <= exit_short <= 0.5 <= exit_long <= enter_long <= 1, got "
                f"{self.enter_short}, {self.exit_short}, {self.exit_long}, {self.enter_long}"
            )
        for name in ("risk_per_trade", "max_gross_notional", "max_order_notional", "orders_per_second",
                     "order_burst", "max_prediction_age_s", "price_band", "daily_loss_limit"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("lot", "max_position", "max_open_orders"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("min_volatility", "rebalance_fraction", "limit_collar_bps", "latency_us", "fee_bps",
                     "fee_per_share", "slippage_bps", "max_fill_qty"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    @property
    def venue_names(self) -> list[str]:
        """The venues' names, by the index events carry (``["paper"]`` with the one paper exchange)."""
        return [name for name, _ in self.venue_specs()] or ["paper"]

    def venue_specs(self) -> list[tuple[str, dict[str, float]]]:
        """``[(name, {fee_bps, slippage_bps, latency_us, max_fill_qty, max_working_notional})]`` of :attr:`venues`."""
        out: list[tuple[str, dict[str, float]]] = []
        keys = ("fee_bps", "slippage_bps", "latency_us", "max_fill_qty", "max_working_notional")
        for item in (v.strip() for v in self.venues.split(",") if v.strip()):
            name, sep, values = item.partition("=")
            parts = values.split("/")
            if not sep or not name.strip().isidentifier() or not 3 <= len(parts) <= 5:
                raise ValueError(f"venues: {item!r} is not name=fee_bps/slippage_bps/latency_us"
                                 "[/max_fill_qty[/max_working_notional]]")
            try:
                spec = {k: float(v) for k, v in zip(keys, parts, strict=False)}
            except ValueError:
                raise ValueError(f"venues: {item!r} has a value that is not a number") from None
            if any(not (v >= 0 and v < float("inf")) for v in spec.values()) or spec.get("max_working_notional") == 0:
                raise ValueError(f"venues: {item!r} needs finite values, not negative (a working limit above 0)")
            if any(name.strip() == n for n, _ in out):
                raise ValueError(f"venues: {name.strip()!r} is named twice")
            out.append((name.strip(), spec))
        if len(out) > 64:
            raise ValueError("venues: at most 64")
        return out

    @classmethod
    def from_env(cls, **overrides) -> "ExecConfig":
        from hft.config import settings_from_env

        return settings_from_env(cls, "HFT_EXEC_", **overrides)

    def to_core(self):
        """The ``hft_exec.ExecutorConfig`` of these settings."""
        core = hft_exec.ExecutorConfig()
        s, r, x = core.strategy, core.risk, core.exchange
        for name in ("enter_long", "exit_long", "enter_short", "exit_short", "risk_per_trade", "min_volatility",
                     "lot", "rebalance_fraction", "limit_collar_bps"):
            setattr(s, name, getattr(self, name))
        for name in ("max_position", "max_gross_notional", "max_order_notional", "orders_per_second",
                     "order_burst", "price_band", "daily_loss_limit", "max_open_orders"):
            setattr(r, name, getattr(self, name))
        r.max_prediction_age_ns = int(self.max_prediction_age_s * 1e9)
        x.latency_ns = int(self.latency_us * 1e3)
        x.fee_bps, x.fee_per_share, x.slippage_bps, x.max_fill_qty = (
            self.fee_bps, self.fee_per_share, self.slippage_bps, self.max_fill_qty)
        # nested structs are returned by value through pybind11: assign them back
        core.strategy, core.risk, core.exchange = s, r, x
        venues = []
        for _, spec in self.venue_specs():
            v = hft_exec.VenueConfig()
            e = v.exchange
            e.fee_bps, e.slippage_bps, e.latency_ns = spec["fee_bps"], spec["slippage_bps"], int(spec["latency_us"] * 1e3)
            e.fee_per_share, e.max_fill_qty = self.fee_per_share, int(spec.get("max_fill_qty", 0))
            v.exchange = e
            if "max_working_notional" in spec:
                v.max_working_notional = spec["max_working_notional"]
            venues.append(v)
        core.venues = venues
        return core
