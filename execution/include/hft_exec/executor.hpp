// The executor: prediction in -> validation -> strategy -> risk -> order out, with positions, PnL, a kill
// switch, and a journal of events from which a restarted executor recovers exactly.
//
// Single-threaded by design (one decision thread), except halt(), which any thread may call. No I/O and no
// heap allocation on the decision path: per-instrument state lives in arrays sized at construction, and the
// event outbox is a vector with reserved capacity that the caller drains (events(), clear_events()).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "hft_exec/config.hpp"
#include "hft_exec/exchange.hpp"
#include "hft_exec/order.hpp"
#include "hft_exec/risk.hpp"
#include "hft_exec/router.hpp"
#include "hft_exec/types.hpp"

namespace hft_exec {

struct Counters {
  std::uint64_t predictions = 0;
  std::uint64_t orders = 0;
  std::uint64_t fills = 0;
  std::uint64_t rejections = 0;
  std::array<std::uint64_t, static_cast<std::size_t>(Reason::Count)> by_reason{};
};

// The executor's event outbox: a growable array whose append is a bounds check and a copy, inline (a
// std::vector's push_back was an out-of-line call costing a quarter of a decision). It grows only outside
// the decision loop, which reserves room first. Pointers, not a count: an event's 64-bit stores may alias a
// std::size_t count (so it was reloaded after every field), never an Event*.
class Outbox {
 public:
  [[gnu::always_inline]] void push(const Event& e) noexcept {
    if (end_ == limit_) [[unlikely]]
      grow(size() + 1);
    *end_++ = e;
  }
  void reserve(std::size_t n) {
    if (n > capacity()) grow(n);
  }
  void clear() noexcept { end_ = data_.get(); }
  [[nodiscard]] std::size_t size() const noexcept { return static_cast<std::size_t>(end_ - data_.get()); }
  [[nodiscard]] std::size_t capacity() const noexcept { return static_cast<std::size_t>(limit_ - data_.get()); }
  [[nodiscard]] std::span<const Event> view() const noexcept { return {data_.get(), size()}; }

 private:
  [[gnu::cold, gnu::noinline]] void grow(std::size_t need);
  std::unique_ptr<Event[]> data_;
  Event* end_ = nullptr;    // one past the last event
  Event* limit_ = nullptr;  // one past the capacity
};

class Executor final : public FillListener {
 public:
  // `gateway` = nullptr: the executor owns a PaperExchange built from config.exchange, or with config.venues a
  // VenueRouter over paper venues built from them.
  explicit Executor(const ExecutorConfig& config, std::uint32_t instruments, ExchangeGateway* gateway = nullptr);

  // One prediction. Never throws; bad input becomes a Reject decision with its reason.
  [[nodiscard]] Decision on_prediction(const Prediction& p) noexcept;
  // Many predictions in order; writes one decision per prediction into `out` (same length).
  void on_predictions(std::span<const Prediction> in, std::span<Decision> out) noexcept;

  // Kill switch: safe from any thread; takes effect before the next decision, which cancels every working
  // order and rejects everything until resume().
  void halt() noexcept {
    halt_request_.store(true, std::memory_order_release);
  }  // release: pairs with the decision thread's acquire
  void resume(Nanos now) noexcept;
  [[nodiscard]] bool halted() const noexcept {
    return halted_ != Reason::None || halt_request_.load(std::memory_order_acquire);
  }
  [[nodiscard]] Reason halt_reason() const noexcept { return halted_; }

  // Replays journal events (in order) into this fresh executor: positions, cash, open orders (re-sent to
  // the paper exchange under their original ids), the last bar seen per instrument, signals, halt state.
  void recover(std::span<const Event> events);

  // Outbox: the events since the last clear_events(), in order. Journal them before acting on them.
  [[nodiscard]] std::span<const Event> events() const noexcept { return events_.view(); }
  void clear_events() noexcept { events_.clear(); }

  [[nodiscard]] std::uint32_t instruments() const noexcept { return n_instruments_; }
  [[nodiscard]] Qty position(InstrumentId i) const noexcept { return i < n_instruments_ ? inst_[i].position : 0; }
  [[nodiscard]] Qty working(InstrumentId i) const noexcept { return i < n_instruments_ ? inst_[i].working : 0; }
  [[nodiscard]] Price last_price(InstrumentId i) const noexcept { return i < n_instruments_ ? inst_[i].last : 0; }
  [[nodiscard]] std::int8_t signal(InstrumentId i) const noexcept { return i < n_instruments_ ? inst_[i].signal : 0; }
  [[nodiscard]] std::uint32_t open_orders(InstrumentId i) const noexcept {
    return i < n_instruments_ ? inst_[i].open : 0;
  }
  [[nodiscard]] Money cash() const noexcept { return cash_; }
  [[nodiscard]] Money equity() const noexcept { return cash_ + marked_; }  // cash + positions at last prices
  [[nodiscard]] Money day_pnl() const noexcept { return equity() - day_start_equity_; }
  [[nodiscard]] Money fees() const noexcept { return fees_; }
  [[nodiscard]] Money gross() const noexcept { return gross_; }
  [[nodiscard]] OrderId next_order_id() const noexcept { return next_id_; }
  [[nodiscard]] const Counters& counters() const noexcept { return counters_; }
  [[nodiscard]] const ExecutorConfig& config() const noexcept { return config_; }
  [[nodiscard]] const ExchangeGateway& gateway() const noexcept { return *gateway_; }

  void on_fill(const FillReport& fill) noexcept override;
  // A venue cancelled the rest of a working order after it stopped answering (VenueRouter::reconnect).
  void on_cancelled(OrderId id, InstrumentId instrument, Nanos now) noexcept override;

  // The venues of config.venues (the executor's own router): a venue stops answering, and answers again (its
  // fills meanwhile are applied, the rest of its working orders closed as venue_unavailable; the events go to
  // the outbox). False without a router or for an unknown venue.
  bool disconnect_venue(std::uint16_t venue) noexcept;
  bool reconnect_venue(std::uint16_t venue, Nanos now) noexcept;
  [[nodiscard]] const VenueRouter* router() const noexcept { return owned_router_.get(); }

  // The day's loss (currency units) that halts for the day, from the next decision on: executors that share a
  // loss limit (shards of the tickers) each get the limit less the others' losses of the day. 0 or less halts at
  // the next accepted prediction.
  void set_daily_loss_limit(double limit) noexcept;

 private:
  struct InstrumentState {
    Nanos last_ts = INT64_MIN;  // bar time of the last prediction seen
    Price last = 0;             // last trade (market) price, ticks
    Price band_candidate = 0;   // the last price refused by the band (0: none)
    Qty position = 0;
    Qty working = 0;         // signed remaining quantity of working orders
    std::uint32_t open = 0;  // working orders (occupied slots in orders_)
    std::int8_t signal = 0;
  };

  void decide(const Prediction& p, Decision& d) noexcept;            // on_prediction, written into d
  void reject(Decision& d, Reason r, Nanos now, Price px) noexcept;  // invalid input: Seen event
  void refuse(Decision& d, Reason r, Nanos now) noexcept;            // valid input, no order: Rejected event
  [[gnu::always_inline]] void seen(InstrumentId i, Nanos bar_ts, Nanos now, Price px, Reason r) noexcept {
    const std::int8_t signal = i < n_instruments_ ? inst_[i].signal : 0;
    emit(Event{now, 0, px, signal, 0, bar_ts, i, EventType::PredictionSeen, r, 0});
  }
  void mark(InstrumentId i, Price px) noexcept;                  // new last price: marks and gross
  void apply_fill(const FillReport& f, bool emit) noexcept;      // positions, cash, order state
  [[gnu::always_inline]] void roll_day(Nanos bar_ts) noexcept {  // new UTC day: day start equity, lifts a loss halt
    if (bar_ts >= next_day_ns_) [[unlikely]]
      new_day(bar_ts);  // the common case, without a call or a division
  }
  [[gnu::cold]] void new_day(Nanos bar_ts) noexcept;
  void engage_halt(Reason why, Nanos now) noexcept;  // cancels working orders, emits Halt
  Order* find_order(InstrumentId i, OrderId id) noexcept;
  Order* free_slot(InstrumentId i) noexcept;
  void close_order(Order& o, OrderState to, Nanos now, Reason why, bool emit) noexcept;
  // Frees a closed order's slot. Only the id marks a slot taken (every reader checks it, and taking a slot
  // writes the whole order): `o = Order{}` was built on the stack and copied with a load wider than the
  // stores before it, a store-forwarding stall on every fill.
  [[gnu::always_inline]] static void release(Order& o, InstrumentState& s) noexcept {
    o.id = 0;
    --s.open;
  }
  Money exposure(const InstrumentState& s) const noexcept;
  [[gnu::always_inline]] void emit(const Event& e) noexcept {
    if (!replaying_) events_.push(e);
  }

  ExecutorConfig config_;
  std::uint32_t n_instruments_;
  std::unique_ptr<PaperExchange> owned_exchange_;
  std::unique_ptr<VenueRouter> owned_router_;
  ExchangeGateway* gateway_;
  std::vector<InstrumentState> inst_;
  std::vector<Order> orders_;  // max_open_orders slots per instrument; id 0 = free
  TokenBucket bucket_;
  Outbox events_;
  Counters counters_{};
  Money loss_limit_;  // config_.risk.daily_loss_limit in ticks
  Money cash_ = 0, marked_ = 0, gross_ = 0, fees_ = 0, day_start_equity_ = 0;
  std::int64_t day_ = INT64_MIN;
  Nanos next_day_ns_ = INT64_MIN;  // first nanosecond after the current UTC day
  OrderId next_id_ = 1;
  Reason halted_ = Reason::None;
  std::atomic<bool> halt_request_{false};
  bool replaying_ = false;
};

}  // namespace hft_exec
