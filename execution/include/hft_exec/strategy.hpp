// Probability thresholds with hysteresis -> signal; volatility-scaled size -> target position. Pure.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "hft_exec/config.hpp"

namespace hft_exec {

// Next signal (-1 short, 0 flat, +1 long) from the current one and a probability in [0, 1]. Entering needs
// the probability past an entry threshold; leaving needs it back past the (closer to 0.5) exit threshold,
// so a probability hovering around one threshold does not flip the position on every bar.
[[nodiscard, gnu::always_inline]] constexpr std::int8_t next_signal(std::int8_t current, double p,
                                                                    const StrategyConfig& c) noexcept {
  if (p >= c.enter_long) return 1;
  if (p <= c.enter_short) return -1;
  if (current > 0 && p < c.exit_long) return 0;
  if (current < 0 && p > c.exit_short) return 0;
  return current;
}

// |target position| in shares for a price (ticks) and a per-bar volatility: risk_per_trade currency units
// of one bar's move, rounded down to whole lots, capped at max_position.
[[nodiscard, gnu::always_inline]] inline Qty target_size(Price price, double volatility, const StrategyConfig& c,
                                                         Qty max_position) noexcept {
  const double px = static_cast<double>(price) * kUnitsPerTick;
  const double vol = std::max(volatility, c.min_volatility);
  const double shares = c.risk_per_trade / (px * vol);
  if (!(shares >= 1.0)) return 0;  // also NaN (0 / 0)
  const Qty lot = std::max<Qty>(c.lot, 1);
  // Truncation is floor here (never negative) and, bounded by max_position, needs no libm call.
  const double capped = std::min(shares, static_cast<double>(max_position));
  const Qty lots = static_cast<Qty>(lot == 1 ? capped : capped / static_cast<double>(lot));  // x / 1.0 == x
  return std::max<Qty>(lots, 0) * lot;
}

// Signed quantity to trade from `current` (position + working) to `target`: 0 when the target keeps the
// side of the current exposure and the change is below rebalance_fraction of the target.
[[nodiscard, gnu::always_inline]] inline Qty order_quantity(Qty current, Qty target, const StrategyConfig& c) noexcept {
  const Qty delta = target - current;
  const bool same_side = (current > 0 && target > 0) || (current < 0 && target < 0);
  if (same_side && std::abs(static_cast<double>(delta)) < c.rebalance_fraction * std::abs(static_cast<double>(target)))
    return 0;
  return delta;
}

// Marketable limit price: the price moved against us by the collar (buy above, sell below), in ticks.
[[nodiscard, gnu::always_inline]] inline Price limit_price(Price price, Side side, const StrategyConfig& c) noexcept {
  const double exact = static_cast<double>(price) * c.limit_collar_bps * kPerBasisPoint;  // >= 0
  auto collar = static_cast<Price>(exact);                                                // ceil without the libm call
  collar += static_cast<double>(collar) < exact;
  return std::max<Price>(price + sign(side) * collar, 1);  // a buy's is above price: the floor is for sells
}

}  // namespace hft_exec
