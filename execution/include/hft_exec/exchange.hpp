// The gateway between the executor and a venue, and the paper exchange that implements it here.
// A real venue adapter implements ExchangeGateway too; the executor does not know which one it talks to.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "hft_exec/config.hpp"
#include "hft_exec/order.hpp"
#include "hft_exec/types.hpp"

namespace hft_exec {

// An execution report from the venue.
struct FillReport {
  OrderId order_id;
  InstrumentId instrument;
  Qty qty;      // > 0, shares executed
  Price price;  // ticks
  Money fee;    // ticks x shares
  Nanos ts_ns;
  std::uint16_t venue = 0;  // which venue executed it (ExecutorConfig::venues; 0 with one venue)
};

// Receives execution reports; the executor implements it.
class FillListener {
 public:
  virtual ~FillListener() = default;
  virtual void on_fill(const FillReport& fill) noexcept = 0;
  // The venue confirms it cancelled what was left of a working order it had not been asked to cancel (orders
  // resolved after a venue stopped answering, VenueRouter::reconnect).
  virtual void on_cancelled(OrderId /*id*/, InstrumentId /*instrument*/, Nanos /*now*/) noexcept {}
};

class ExchangeGateway {
 public:
  virtual ~ExchangeGateway() = default;
  // Hands an order to the venue. Returns false if the venue has seen this client order id before (a
  // re-send after a restart): client order ids are increasing and make sends idempotent.
  [[nodiscard]] virtual bool send(const Order& order, Nanos now) noexcept = 0;
  // Cancels what is left of a working order; returns false if the venue does not know it.
  virtual bool cancel(OrderId id, InstrumentId instrument, Nanos now) noexcept = 0;
  // A new market price (ticks) for an instrument: executes what can execute, reporting to `listener`.
  virtual void on_market(InstrumentId instrument, Price price, Nanos now, FillListener& listener) noexcept = 0;
  // The venue an accepted order went to (a router's choice; 0 for a single venue).
  [[nodiscard]] virtual std::uint16_t venue_of(OrderId /*id*/, InstrumentId /*instrument*/) const noexcept { return 0; }
  // False while the order's venue does not answer: its state there is unknown (it may be executing), so the
  // order stays working until the venue says what became of it; it must not be closed on a guess.
  [[nodiscard]] virtual bool answering(OrderId /*id*/, InstrumentId /*instrument*/) const noexcept { return true; }
};

// Simulated venue: an order arrives `latency_ns` after it is sent and executes at the first market price
// seen at or after its arrival, moved against it by the slippage, if that is within its limit; at most
// `max_fill_qty` shares per instrument per market update (partial fills), fees per fill. Working orders live
// in fixed slots per instrument: no allocation after construction.
class PaperExchange final : public ExchangeGateway {
 public:
  PaperExchange(const PaperExchangeConfig& config, std::uint32_t max_instruments, std::uint32_t slots);

  // Inline (the executor that owns this exchange calls it directly, once per order).
  [[nodiscard, gnu::always_inline]] bool send(const Order& order, Nanos now) noexcept override;
  bool cancel(OrderId id, InstrumentId instrument, Nanos now) noexcept override;
  void on_market(InstrumentId instrument, Price price, Nanos now, FillListener& listener) noexcept override {
    deliver(instrument, price, now, listener);
  }
  // on_market for a listener whose type is known here: its on_fill is a direct call the compiler can inline
  // (the executor that owns this exchange uses it). Inline: most market updates find no working order on
  // their instrument and return here.
  template <class Listener>
  [[gnu::always_inline]] void deliver(InstrumentId instrument, Price price, Nanos now, Listener& listener) noexcept {
    if (instrument < max_instruments_ && price > 0 && working_[instrument] != 0)
      match(instrument, price, now, listener);
  }

  // Fill price for a side at a market price (slippage applied), and the fee of a fill, both integer.
  [[nodiscard]] Price execution_price(Side side, Price market) const noexcept;
  [[nodiscard]] Money fee(Qty qty, Price price) const noexcept;
  [[nodiscard]] std::uint32_t working(InstrumentId instrument) const noexcept;
  [[nodiscard]] std::uint64_t duplicate_sends() const noexcept { return duplicate_sends_; }
  // Restores the id high-water mark after a restart (from the journal).
  void resume_ids_after(OrderId id) noexcept { last_id_ = std::max(last_id_, id); }
  // Restores a working order after a restart (from the journal).
  bool restore(const Order& order) noexcept;
  // The venue index its fill reports carry (a router's venue number).
  void set_venue_id(std::uint16_t venue) noexcept { venue_ = venue; }

 private:
  struct Slot {
    OrderId id = 0;  // 0 = free: the only field a free slot keeps valid; sending writes them all
    Side side = Side::Buy;
    Qty remaining = 0;
    Price limit = 0;
    Nanos arrive_ns = 0;
  };
  template <class Listener>
  void match(InstrumentId instrument, Price price, Nanos now, Listener& listener) noexcept;
  Slot* slots_of(InstrumentId instrument) noexcept { return &slots_[std::size_t{instrument} * per_instrument_]; }
  const Slot* slots_of(InstrumentId instrument) const noexcept {
    return &slots_[std::size_t{instrument} * per_instrument_];
  }

  PaperExchangeConfig config_;
  std::uint32_t max_instruments_;
  std::uint32_t per_instrument_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> working_;  // orders in the slots, per instrument (a quiet instrument costs nothing)
  OrderId last_id_ = 0;                 // client order ids increase: anything not above this is a re-send
  std::uint64_t duplicate_sends_ = 0;
  std::uint16_t venue_ = 0;
};

template <class Listener>
void PaperExchange::match(InstrumentId instrument, Price price, Nanos now, Listener& listener) noexcept {
  Slot* slots = slots_of(instrument);
  Qty liquidity = config_.max_fill_qty > 0 ? config_.max_fill_qty : INT64_MAX;
  const Price buy_px = execution_price(Side::Buy, price), sell_px = execution_price(Side::Sell, price);
  const auto fill_price = [&](Side side) { return sell_px + (buy_px - sell_px) * (side == Side::Buy); };
  // Oldest order first (arrival time, then client order id: ids increase with send order, slots are
  // reused), so a partial fill goes to the order that arrived first. A scan stops at the last working slot.
  for (std::uint32_t left = working_[instrument]; left != 0 && liquidity > 0; left = working_[instrument]) {
    Slot* next = nullptr;
    for (std::uint32_t i = 0; left != 0 && i < per_instrument_; ++i) {
      Slot& s = slots[i];
      if (s.id == 0) continue;
      --left;
      if (s.arrive_ns > now) continue;
      const bool marketable =
          sign(s.side) * (s.limit - fill_price(s.side)) >= 0;  // buy: px <= limit; sell: px >= limit
      if (marketable &&
          (next == nullptr || s.arrive_ns < next->arrive_ns || (s.arrive_ns == next->arrive_ns && s.id < next->id)))
        next = &s;
    }
    if (next == nullptr) return;
    const Qty q = std::min(next->remaining, liquidity);
    const Price px = fill_price(next->side);
    liquidity -= q;
    next->remaining -= q;
    const OrderId id = next->id;
    if (next->remaining == 0) {
      next->id = 0;  // free (see Slot)
      --working_[instrument];
    }  // else liquidity is spent: the rest waits for the next update
    listener.on_fill(FillReport{id, instrument, q, px, fee(q, px), now, venue_});
  }
}

inline bool PaperExchange::send(const Order& order, Nanos now) noexcept {
  if (order.instrument >= max_instruments_ || order.remaining() <= 0) return false;
  if (order.id <= last_id_) {  // ids only grow: an id not above the last one was sent before
    ++duplicate_sends_;
    return false;
  }
  Slot* slots = slots_of(order.instrument);
  for (std::uint32_t i = 0; i < per_instrument_; ++i) {
    if (slots[i].id == 0) {
      slots[i] = Slot{order.id, order.side, order.remaining(), order.limit, now + config_.latency_ns};
      ++working_[order.instrument];
      last_id_ = order.id;
      return true;
    }
  }
  return false;  // no free slot: the executor's open-order limit keeps this from happening
}

}  // namespace hft_exec
