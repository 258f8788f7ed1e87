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
};

// Receives execution reports; the executor implements it.
class FillListener {
 public:
  virtual ~FillListener() = default;
  virtual void on_fill(const FillReport& fill) noexcept = 0;
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
};

// Simulated venue: an order arrives `latency_ns` after it is sent and executes at the first market price
// seen at or after its arrival, moved against it by the slippage, if that is within its limit; at most
// `max_fill_qty` shares per instrument per market update (partial fills), fees per fill. Working orders live
// in fixed slots per instrument: no allocation after construction.
class PaperExchange final : public ExchangeGateway {
 public:
  PaperExchange(const PaperExchangeConfig& config, std::uint32_t max_instruments, std::uint32_t slots);

  [[nodiscard]] bool send(const Order& order, Nanos now) noexcept override;
  bool cancel(OrderId id, InstrumentId instrument, Nanos now) noexcept override;
  // Inline: most market updates find no working order on their instrument and return here.
  void on_market(InstrumentId instrument, Price price, Nanos now, FillListener& listener) noexcept override {
    if (instrument < max_instruments_ && price > 0 && working_[instrument] != 0) match(instrument, price, now, listener);
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

 private:
  struct Slot {
    OrderId id = 0;  // 0 = free: the only field a free slot keeps valid; sending writes them all
    Side side = Side::Buy;
    Qty remaining = 0;
    Price limit = 0;
    Nanos arrive_ns = 0;
  };
  void match(InstrumentId instrument, Price price, Nanos now, FillListener& listener) noexcept;
  Slot* slots_of(InstrumentId instrument) noexcept { return &slots_[std::size_t{instrument} * per_instrument_]; }
  const Slot* slots_of(InstrumentId instrument) const noexcept {
    return &slots_[std::size_t{instrument} * per_instrument_];
  }

  PaperExchangeConfig config_;
  std::uint32_t max_instruments_;
  std::uint32_t per_instrument_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> working_;  // orders in the slots, per instrument (a quiet instrument costs nothing)
  OrderId last_id_ = 0;  // client order ids increase: anything not above this is a re-send
  std::uint64_t duplicate_sends_ = 0;
};

}  // namespace hft_exec
