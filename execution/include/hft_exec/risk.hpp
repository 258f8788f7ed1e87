// Pre-trade risk: every order passes check_order before it can reach a gateway.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "hft_exec/config.hpp"
#include "hft_exec/types.hpp"

namespace hft_exec {

// Order-rate limit: `rate` tokens per second up to `burst`; an order takes one token.
class TokenBucket {
 public:
  TokenBucket(double rate_per_s, double burst) noexcept : rate_(rate_per_s), burst_(burst), tokens_(burst) {}

  // Refills for the time since the last call (time never runs backwards here) and takes a token if one is
  // there.
  [[nodiscard, gnu::always_inline]] bool try_take(Nanos now) noexcept {
    if (now > last_) {
      if (last_ != kNever) tokens_ = std::min(burst_, tokens_ + rate_ * static_cast<double>(now - last_) * 1e-9);
      last_ = now;
    }
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }
  [[nodiscard]] double tokens() const noexcept { return tokens_; }

 private:
  static constexpr Nanos kNever = INT64_MIN;
  double rate_, burst_, tokens_;
  Nanos last_ = kNever;
};

// What the risk check needs to know about the book, in integer units.
struct Exposure {
  Qty position = 0;  // the instrument's position
  Qty working = 0;   // signed quantity of its working orders
  std::uint32_t open_orders = 0;
  Money gross = 0;  // sum over instruments of |position + working| x last price (ticks x shares)
  Price last = 0;   // the instrument's last price (ticks)
};

// Checks in a fixed order (cheapest and most fundamental first); the first failing rule is the reason.
// `qty` is signed (buy > 0). The rate bucket is consulted last, so a rejected order spends no token.
[[nodiscard, gnu::always_inline]] inline Reason check_order(Qty qty, Price limit, const Exposure& e,
                                                            const RiskConfig& c, TokenBucket& bucket,
                                                            Nanos now) noexcept {
  const double notional = std::abs(static_cast<double>(qty)) * static_cast<double>(limit) * kUnitsPerTick;
  if (notional > c.max_order_notional) return Reason::MaxOrderNotional;
  const Qty after = e.position + e.working + qty;
  if (std::abs(after) > c.max_position) return Reason::MaxPosition;
  const Money before_inst = std::abs(e.position + e.working) * e.last;
  const double gross_after = static_cast<double>(e.gross - before_inst + std::abs(after) * e.last) * kUnitsPerTick;
  if (std::abs(after) > std::abs(e.position + e.working) && gross_after > c.max_gross_notional)
    return Reason::MaxGrossNotional;  // only orders that add exposure can breach the gross limit
  if (e.open_orders >= c.max_open_orders) return Reason::TooManyOpenOrders;
  if (!bucket.try_take(now)) return Reason::OrderRate;
  return Reason::None;
}

// True when `price` (ticks) is more than `band` (a fraction) away from `last` (ticks; 0 = no trade yet):
// |price - last| > band x last, without a division (exactly `band` away is inside).
[[nodiscard, gnu::always_inline]] inline bool outside_band(Price price, Price last, double band) noexcept {
  if (last <= 0) return false;
  return static_cast<double>(std::abs(price - last)) > band * static_cast<double>(last);
}

}  // namespace hft_exec
