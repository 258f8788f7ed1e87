#include "hft_exec/exchange.hpp"

#include <algorithm>
#include <cmath>

namespace hft_exec {

PaperExchange::PaperExchange(const PaperExchangeConfig& config, std::uint32_t max_instruments, std::uint32_t slots)
    : config_(config),
      max_instruments_(max_instruments),
      per_instrument_(std::max<std::uint32_t>(slots, 1)),
      slots_(std::size_t{max_instruments} * per_instrument_),
      working_(max_instruments, 0) {}

bool PaperExchange::restore(const Order& order) noexcept {
  const OrderId high = last_id_;
  last_id_ = 0;
  const bool ok = send(order, order.sent_ns);
  last_id_ = std::max(high, order.id);
  return ok;
}

bool PaperExchange::cancel(OrderId id, InstrumentId instrument, Nanos) noexcept {
  if (instrument >= max_instruments_ || id == 0) return false;  // id 0 marks a free slot, never an order
  Slot* slots = slots_of(instrument);
  for (std::uint32_t i = 0; i < per_instrument_; ++i) {
    if (slots[i].id == id) {
      slots[i].id = 0;  // free (see Slot)
      --working_[instrument];
      return true;
    }
  }
  return false;
}

Price PaperExchange::execution_price(Side side, Price market) const noexcept {
  const auto slip =
      static_cast<Price>(round_half_away(static_cast<double>(market) * config_.slippage_bps * kPerBasisPoint));
  return std::max<Price>(market + sign(side) * slip, 1);  // a buy's is above market: the floor is for sells
}

Money PaperExchange::fee(Qty qty, Price price) const noexcept {
  const double notional = static_cast<double>(qty) * static_cast<double>(price);  // ticks x shares
  const double per_share = static_cast<double>(qty) * config_.fee_per_share * kTicksPerUnit;
  return static_cast<Money>(round_half_away(notional * config_.fee_bps * kPerBasisPoint + per_share));
}

std::uint32_t PaperExchange::working(InstrumentId instrument) const noexcept {
  return instrument < max_instruments_ ? working_[instrument] : 0;
}

}  // namespace hft_exec
