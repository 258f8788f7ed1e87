// Orders and their state machine. Integer prices (ticks) and quantities (shares).
#pragma once

#include <cstdint>

#include "hft_exec/types.hpp"

namespace hft_exec {

enum class OrderState : std::uint8_t {
  New = 0,          // created by the executor, not yet checked
  Sent,             // passed risk, handed to the gateway
  PartiallyFilled,  // some quantity executed, the rest working
  Filled,           // terminal
  Cancelled,        // terminal
  Rejected,         // terminal: by risk (never sent) or by the venue
};

[[nodiscard]] constexpr bool is_terminal(OrderState s) noexcept {
  return s == OrderState::Filled || s == OrderState::Cancelled || s == OrderState::Rejected;
}

// The legal transitions; anything else is a bug or a corrupt venue message and is refused.
[[nodiscard]] constexpr bool can_transition(OrderState from, OrderState to) noexcept {
  switch (from) {
    case OrderState::New: return to == OrderState::Sent || to == OrderState::Rejected;
    case OrderState::Sent:
      return to == OrderState::PartiallyFilled || to == OrderState::Filled || to == OrderState::Cancelled ||
             to == OrderState::Rejected;
    case OrderState::PartiallyFilled:
      return to == OrderState::PartiallyFilled || to == OrderState::Filled || to == OrderState::Cancelled;
    case OrderState::Filled:
    case OrderState::Cancelled:
    case OrderState::Rejected: return false;
  }
  return false;
}

struct Order {
  OrderId id = 0;
  InstrumentId instrument = 0;
  Side side = Side::Buy;
  Qty qty = 0;      // > 0
  Qty filled = 0;   // 0 <= filled <= qty
  Price limit = 0;  // ticks
  Nanos sent_ns = 0;
  OrderState state = OrderState::New;
  std::uint16_t venue = 0;  // where it was sent (ExecutorConfig::venues; 0 with one venue)

  [[nodiscard]] Qty remaining() const noexcept { return qty - filled; }
  [[nodiscard]] Qty signed_remaining() const noexcept { return sign(side) * remaining(); }
  [[nodiscard]] Qty signed_filled() const noexcept { return sign(side) * filled; }

  // Moves to `to` if legal; returns false (and changes nothing) otherwise.
  [[nodiscard]] bool transition(OrderState to) noexcept {
    if (!can_transition(state, to)) return false;
    state = to;
    return true;
  }

  // Applies an execution of `q` shares (0 < q <= remaining); returns false if illegal.
  [[nodiscard]] bool apply_fill(Qty q) noexcept {
    if (q <= 0 || q > remaining()) return false;
    const OrderState to = (filled + q == qty) ? OrderState::Filled : OrderState::PartiallyFilled;
    if (!can_transition(state, to)) return false;
    filled += q;
    state = to;
    return true;
  }
};

}  // namespace hft_exec
