#include "hft_exec/executor.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "hft_exec/strategy.hpp"

namespace hft_exec {

namespace {
constexpr double kMaxPrice = 1e7;  // currency units: keeps ticks x shares far inside int64
constexpr Nanos kDayNs = 86'400'000'000'000;
constexpr std::size_t kOutboxCapacity = 1 << 16;

Money to_money(double units) noexcept { return round_half_away(units * kTicksPerUnit); }

// recv - ts > max_age, exactly: garbage bar times must not overflow the subtraction (UB, and a wrapped
// age would let an ancient prediction through as fresh).
bool too_old(Nanos ts, Nanos recv, Nanos max_age) noexcept {
  Nanos age = 0;
  if (!__builtin_sub_overflow(recv, ts, &age)) return age > max_age;
  return recv > ts;  // |recv - ts| >= 2^63: beyond any max_age in the direction of its sign
}
}  // namespace

Executor::Executor(const ExecutorConfig& config, std::uint32_t instruments, ExchangeGateway* gateway)
    : config_(config),
      n_instruments_(std::min(instruments, config.max_instruments)),
      owned_exchange_(
          gateway || !config.venues.empty()
              ? nullptr
              : std::make_unique<PaperExchange>(config.exchange, n_instruments_, config.risk.max_open_orders)),
      owned_router_(gateway || config.venues.empty()
                        ? nullptr
                        : std::make_unique<VenueRouter>(config.venues, n_instruments_, config.risk.max_open_orders)),
      gateway_(gateway
                   ? gateway
                   : (owned_exchange_ ? static_cast<ExchangeGateway*>(owned_exchange_.get()) : owned_router_.get())),
      inst_(n_instruments_),
      orders_(std::size_t{n_instruments_} * config.risk.max_open_orders),
      bucket_(config.risk.orders_per_second, config.risk.order_burst),
      loss_limit_(to_money(config.risk.daily_loss_limit)),
      next_id_(std::max<OrderId>(config.first_order_id, 1)) {
  events_.reserve(kOutboxCapacity);
}

void Outbox::grow(std::size_t need) {
  const std::size_t n = size(), cap = std::max({need, 2 * capacity(), std::size_t{64}});
  auto bigger = std::make_unique_for_overwrite<Event[]>(cap);
  std::copy(data_.get(), end_, bigger.get());
  data_ = std::move(bigger);
  end_ = data_.get() + n;
  limit_ = data_.get() + cap;
}

Decision Executor::on_prediction(const Prediction& p) noexcept {
  Decision d;
  decide(p, d);
  return d;
}

// The decision is written in place: returned by value through the batch loop, its 48 bytes were built on
// the stack, copied, and reloaded with wider loads than the stores (a store-forwarding stall per field),
// about a third of a model-like batch's time.
void Executor::decide(const Prediction& p, Decision& d) noexcept {
  ++counters_.predictions;
  d = Decision{p.ts_ns, 0, 0, 0, 0, p.instrument, Action::Hold, Reason::None, 0};
  const Nanos now = p.recv_ns;
  // The kill switch engages before anything else: whatever this prediction is, working orders go now. It
  // overrides a daily-loss halt (which the next day would lift).
  if (halted_ != Reason::KillSwitch && halt_request_.load(std::memory_order_acquire))
    engage_halt(Reason::KillSwitch, now);
  if (p.instrument >= n_instruments_) return reject(d, Reason::UnknownInstrument, now, 0);
  const InstrumentId i = p.instrument;
  InstrumentState& s = inst_[i];
  d.target = s.position + s.working;
  // Comparisons are false for NaN, so each test also rejects NaN.
  if (!(p.probability >= 0.0 && p.probability <= 1.0)) return reject(d, Reason::InvalidProbability, now, 0);
  if (!(p.price > 0.0 && p.price <= kMaxPrice)) return reject(d, Reason::InvalidPrice, now, 0);
  if (!(p.volatility >= 0.0 && std::isfinite(p.volatility))) return reject(d, Reason::InvalidVolatility, now, 0);
  if (p.ts_ns <= s.last_ts) return reject(d, Reason::DuplicatePrediction, now, 0);
  const Price px = round_half_away(p.price * kTicksPerUnit);
  if (px <= 0) return reject(d, Reason::InvalidPrice, now, 0);
  if (too_old(p.ts_ns, now, config_.risk.max_prediction_age_ns)) {
    s.last_ts = p.ts_ns;
    return reject(d, Reason::StalePrediction, now, 0);
  }
  if (p.ts_ns > now && p.ts_ns - now > config_.risk.max_future_ns) return reject(d, Reason::FutureBarTime, now, 0);
  if (outside_band(px, s.last, config_.risk.price_band) &&
      (s.band_candidate == 0 || outside_band(px, s.band_candidate, config_.risk.price_band))) {
    s.last_ts = p.ts_ns;  // a bad tick must not move marks or trade; a second consistent one is the market
    s.band_candidate = px;
    return reject(d, Reason::PriceBand, now, px);
  }
  s.band_candidate = 0;

  // Accepted market data: new day, marks, signal.
  roll_day(p.ts_ns);
  s.last_ts = p.ts_ns;
  mark(i, px);
  s.signal = next_signal(s.signal, p.probability, config_.strategy);
  seen(i, p.ts_ns, now, px, Reason::None);
  if (halted_ == Reason::None && day_pnl() <= -loss_limit_) engage_halt(Reason::DailyLossLimit, now);

  // Flat signal, flat target: the sizing (a division) only when there is a side to size.
  const Qty target =
      s.signal == 0 ? 0 : s.signal * target_size(px, p.volatility, config_.strategy, config_.risk.max_position);
  d.target = target;
  Reason why = halted_;
  const Qty delta = order_quantity(s.position + s.working, target, config_.strategy);
  Order* slot = nullptr;
  Price limit = 0;
  if (why == Reason::None && delta != 0) {
    const Side side = side_of(delta);
    limit = limit_price(px, side, config_.strategy);
    const Exposure e{s.position, s.working, s.open, gross_, s.last};
    why = check_order(delta, limit, e, config_.risk, bucket_, now);
    if (why == Reason::None) {
      slot = free_slot(i);
      *slot = Order{next_id_++, i, side, std::abs(delta), 0, limit, now, OrderState::New};
      ++s.open;
    }
  }
  if (why != Reason::None) refuse(d, why, now);
  if (slot != nullptr) {
    (void)slot->transition(OrderState::Sent);
    const Money before = exposure(s);
    s.working += delta;
    gross_ += exposure(s) - before;
    ++counters_.orders;
    d.action = Action::Order;
    d.order_id = slot->id;
    d.qty = delta;
    d.price = limit;
    bool sent;
    if (owned_exchange_) {
      emit(Event{now, slot->id, limit, delta, 0, p.ts_ns, i, EventType::OrderSent, Reason::None, 0});
      sent = owned_exchange_->send(*slot, now);
    } else {  // the event names the venue a router chose
      sent = gateway_->send(*slot, now);
      if (sent) slot->venue = gateway_->venue_of(slot->id, i);
      emit(Event{now, slot->id, limit, delta, 0, p.ts_ns, i, EventType::OrderSent, Reason::None, slot->venue});
    }
    if (!sent) {
      close_order(*slot, OrderState::Rejected, now, Reason::VenueRejected, true);
      --counters_.orders;
      refuse(d, Reason::VenueRejected, now);
      d.order_id = 0;
      d.qty = 0;
      d.price = 0;
    }
  }
  // Earlier orders execute against this bar's price: through the gateway, or, when the paper exchange is
  // ours, with fills applied by a direct call instead of the virtual on_fill.
  if (owned_exchange_) {
    struct Direct {
      Executor& ex;
      void on_fill(const FillReport& f) noexcept { ex.apply_fill(f, true); }
    } direct{*this};
    owned_exchange_->deliver(i, px, now, direct);
  } else {
    gateway_->on_market(i, px, now, *this);
  }
}

void Executor::on_predictions(std::span<const Prediction> in, std::span<Decision> out) noexcept {
  const std::size_t n = std::min(in.size(), out.size());
  events_.reserve(events_.size() + 4 * n);  // once per batch, so the loop itself never allocates
  for (std::size_t k = 0; k < n; ++k) decide(in[k], out[k]);
}

void Executor::reject(Decision& d, Reason r, Nanos now, Price px) noexcept {
  ++counters_.rejections;
  ++counters_.by_reason[static_cast<std::size_t>(r)];
  d.action = Action::Reject;
  d.reason = r;
  seen(d.instrument, d.ts_ns, now, px, r);
}

void Executor::refuse(Decision& d, Reason r, Nanos now) noexcept {
  ++counters_.rejections;
  ++counters_.by_reason[static_cast<std::size_t>(r)];
  d.action = Action::Reject;
  d.reason = r;
  emit(Event{now, 0, 0, d.target, 0, d.ts_ns, d.instrument, EventType::Rejected, r, 0});
}

void Executor::mark(InstrumentId i, Price px) noexcept {
  InstrumentState& s = inst_[i];
  const Money before = exposure(s);
  marked_ += s.position * (px - s.last);
  s.last = px;
  gross_ += exposure(s) - before;
}

Money Executor::exposure(const InstrumentState& s) const noexcept { return std::abs(s.position + s.working) * s.last; }

void Executor::new_day(Nanos bar_ts) noexcept {
  const std::int64_t day = bar_ts / kDayNs;  // UTC day: a New York session lies inside one
  if (day <= day_) return;
  day_ = day;
  next_day_ns_ = day < INT64_MAX / kDayNs ? (day + 1) * kDayNs : INT64_MAX;
  day_start_equity_ = equity();
  if (halted_ == Reason::DailyLossLimit) {  // the loss limit halts for the day, not for ever
    halted_ = Reason::None;
    emit(Event{bar_ts, 0, 0, 0, 0, bar_ts, 0, EventType::Resume, Reason::DailyLossLimit, 0});
  }
}

void Executor::engage_halt(Reason why, Nanos now) noexcept {
  halted_ = why;
  for (InstrumentId i = 0; i < n_instruments_; ++i) {
    for (std::uint32_t k = 0; k < config_.risk.max_open_orders; ++k) {
      Order& o = orders_[std::size_t{i} * config_.risk.max_open_orders + k];
      if (o.id == 0 || !gateway_->answering(o.id, i)) continue;  // unknown there: resolved when it answers
      (void)gateway_->cancel(o.id, i, now);
      close_order(o, OrderState::Cancelled, now, why, true);
    }
  }
  emit(Event{now, 0, 0, 0, 0, now, 0, EventType::Halt, why, 0});
}

void Executor::resume(Nanos now) noexcept {
  halt_request_.store(false, std::memory_order_release);
  if (halted_ == Reason::None) return;
  const Reason was = halted_;
  halted_ = Reason::None;
  emit(Event{now, 0, 0, 0, 0, now, 0, EventType::Resume, was, 0});
}

Order* Executor::find_order(InstrumentId i, OrderId id) noexcept {
  if (i >= n_instruments_ || id == 0) return nullptr;
  Order* slots = &orders_[std::size_t{i} * config_.risk.max_open_orders];
  for (std::uint32_t k = 0; k < config_.risk.max_open_orders; ++k)
    if (slots[k].id == id) return &slots[k];
  return nullptr;
}

Order* Executor::free_slot(InstrumentId i) noexcept {
  Order* slots = &orders_[std::size_t{i} * config_.risk.max_open_orders];
  for (std::uint32_t k = 0; k < config_.risk.max_open_orders; ++k)
    if (slots[k].id == 0) return &slots[k];
  return nullptr;
}

void Executor::close_order(Order& o, OrderState to, Nanos now, Reason why, bool emit_event) noexcept {
  InstrumentState& s = inst_[o.instrument];
  const Money before = exposure(s);
  s.working -= o.signed_remaining();
  gross_ += exposure(s) - before;
  (void)o.transition(to);
  if (emit_event)
    emit(Event{now, o.id, o.limit, o.signed_filled(), 0, 0, o.instrument, EventType::OrderDone, why, o.venue});
  release(o, s);
}

void Executor::on_fill(const FillReport& f) noexcept { apply_fill(f, true); }

void Executor::on_cancelled(OrderId id, InstrumentId instrument, Nanos now) noexcept {
  if (Order* o = find_order(instrument, id))
    close_order(*o, OrderState::Cancelled, now, Reason::VenueUnavailable, true);
}

void Executor::set_daily_loss_limit(double limit) noexcept {
  config_.risk.daily_loss_limit = limit;
  loss_limit_ = std::isfinite(limit) ? to_money(std::clamp(limit, -1e12, 1e12)) : to_money(1e12);
}

bool Executor::disconnect_venue(std::uint16_t venue) noexcept {
  if (!owned_router_ || venue >= owned_router_->venues()) return false;
  owned_router_->disconnect(venue);
  return true;
}

bool Executor::reconnect_venue(std::uint16_t venue, Nanos now) noexcept {
  if (!owned_router_ || venue >= owned_router_->venues()) return false;
  events_.reserve(events_.size() + 2 * orders_.size() + 64);
  (void)owned_router_->reconnect(venue, now, *this);
  return true;
}

// Inline (and defined only here): the paper exchange's fills reach it through decide's direct listener.
[[gnu::always_inline]] inline void Executor::apply_fill(const FillReport& f, bool emit_event) noexcept {
  Order* o = find_order(f.instrument, f.order_id);
  if (o == nullptr || !o->apply_fill(f.qty)) return;  // not ours or impossible: changes nothing
  InstrumentState& s = inst_[f.instrument];
  const Qty q = sign(o->side) * f.qty;
  s.position += q;
  s.working -= q;  // |position + working| unchanged: gross too
  cash_ -= q * f.price + f.fee;
  fees_ += f.fee;
  marked_ += q * s.last;
  ++counters_.fills;
  if (emit_event)
    emit(Event{f.ts_ns, f.order_id, f.price, q, f.fee, 0, f.instrument, EventType::Fill, Reason::None, f.venue});
  if (o->state == OrderState::Filled) {
    if (emit_event)
      emit(Event{f.ts_ns, o->id, o->limit, o->signed_filled(), 0, 0, o->instrument, EventType::OrderDone, Reason::None,
                 o->venue});
    release(*o, s);
  }
}

void Executor::recover(std::span<const Event> events) {
  replaying_ = true;
  for (const Event& e : events) {
    if (e.instrument >= n_instruments_ && e.type != EventType::Halt && e.type != EventType::Resume) continue;
    switch (e.type) {
      case EventType::PredictionSeen: {
        InstrumentState& s = inst_[e.instrument];
        if (e.reason == Reason::PriceBand) {  // a rejected print: last bar seen, and the band candidate
          s.last_ts = std::max(s.last_ts, e.bar_ts_ns);
          s.band_candidate = e.price;
        } else if (e.price > 0) {  // accepted market data
          roll_day(e.bar_ts_ns);
          s.last_ts = std::max(s.last_ts, e.bar_ts_ns);
          mark(e.instrument, e.price);
          s.band_candidate = 0;
          s.signal = static_cast<std::int8_t>(e.qty);
        } else if (e.reason == Reason::StalePrediction) {
          s.last_ts = std::max(s.last_ts, e.bar_ts_ns);
        }
        break;
      }
      case EventType::OrderSent: {
        Order* slot = free_slot(e.instrument);
        if (slot == nullptr) break;
        const Side side = side_of(e.qty);
        *slot = Order{e.order_id, e.instrument, side, std::abs(e.qty), 0, e.price, e.ts_ns, OrderState::Sent, e.venue};
        InstrumentState& s = inst_[e.instrument];
        ++s.open;
        const Money before = exposure(s);
        s.working += e.qty;
        gross_ += exposure(s) - before;
        next_id_ = std::max(next_id_, e.order_id + 1);
        break;
      }
      case EventType::Fill:
        apply_fill(FillReport{e.order_id, e.instrument, std::abs(e.qty), e.price, e.fee, e.ts_ns}, false);
        break;
      case EventType::OrderDone:
        if (Order* o = find_order(e.instrument, e.order_id))
          close_order(*o, OrderState::Cancelled, e.ts_ns, e.reason, false);
        break;
      case EventType::Halt: halted_ = e.reason; break;
      case EventType::Resume: halted_ = Reason::None; break;
      case EventType::Rejected: break;
    }
  }
  replaying_ = false;
  counters_ = Counters{};
  if (owned_exchange_) {  // the paper exchange lived in the crashed process: give it back the working orders
    for (const Order& o : orders_)
      if (o.id != 0) (void)owned_exchange_->restore(o);
    owned_exchange_->resume_ids_after(next_id_ - 1);
  } else if (owned_router_) {  // the paper venues too, each order at its own
    for (const Order& o : orders_)
      if (o.id != 0) (void)owned_router_->restore(o, o.venue);
    owned_router_->resume_ids_after(next_id_ - 1);
  }
}

}  // namespace hft_exec
