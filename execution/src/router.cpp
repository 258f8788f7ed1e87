#include "hft_exec/router.hpp"

#include <algorithm>
#include <cmath>

namespace hft_exec {

struct VenueRouter::Forward {
  VenueRouter& router;
  FillListener& listener;
  void on_fill(const FillReport& f) noexcept {
    router.filled(f);
    listener.on_fill(f);
  }
};

struct VenueRouter::Hold {
  VenueRouter& router;
  void on_fill(const FillReport& f) noexcept { router.held_.push_back(f); }
};

VenueRouter::VenueRouter(const std::vector<VenueConfig>& venues, std::uint32_t instruments, std::uint32_t slots)
    : config_(venues),
      connected_(venues.size(), 1),
      working_notional_(venues.size(), 0),
      routes_(std::size_t{instruments} * std::max<std::uint32_t>(slots, 1)),
      instruments_(instruments),
      slots_(std::max<std::uint32_t>(slots, 1)) {
  for (std::size_t v = 0; v < venues.size(); ++v) {
    venues_.push_back(std::make_unique<PaperExchange>(venues[v].exchange, instruments, slots_));
    venues_.back()->set_venue_id(static_cast<std::uint16_t>(v));
    cost_bps_.push_back(venues[v].exchange.slippage_bps + venues[v].exchange.fee_bps);
  }
  held_.reserve(64);
}

VenueRouter::Route* VenueRouter::route_of(OrderId id, InstrumentId instrument) noexcept {
  if (instrument >= instruments_ || id == 0) return nullptr;
  Route* r = &routes_[std::size_t{instrument} * slots_];
  for (std::uint32_t k = 0; k < slots_; ++k)
    if (r[k].id == id) return &r[k];
  return nullptr;
}

const VenueRouter::Route* VenueRouter::route_of(OrderId id, InstrumentId instrument) const noexcept {
  return const_cast<VenueRouter*>(this)->route_of(id, instrument);
}

bool VenueRouter::send(const Order& order, Nanos now) noexcept {
  if (order.instrument >= instruments_ || order.remaining() <= 0 || order.limit <= 0) return false;
  Route* free = nullptr;
  Route* slots = &routes_[std::size_t{order.instrument} * slots_];
  for (std::uint32_t k = 0; k < slots_ && free == nullptr; ++k)
    if (slots[k].id == 0) free = &slots[k];
  if (free == nullptr) return false;
  const Money notional = order.remaining() * order.limit;
  const double price = static_cast<double>(order.limit) * kUnitsPerTick;
  int best = -1;
  double best_cost = 0.0;
  for (std::size_t v = 0; v < venues_.size(); ++v) {
    if (!connected_[v] ||
        static_cast<double>(working_notional_[v] + notional) * kUnitsPerTick > config_[v].max_working_notional)
      continue;
    const double cost = cost_bps_[v] + config_[v].exchange.fee_per_share / price / kPerBasisPoint;
    const bool better = best < 0 || cost < best_cost ||
                        (cost == best_cost && config_[v].exchange.latency_ns < config_[best].exchange.latency_ns);
    if (better) {
      best = static_cast<int>(v);
      best_cost = cost;
    }
  }
  if (best < 0 || !venues_[static_cast<std::size_t>(best)]->send(order, now)) return false;
  *free = Route{order.id, static_cast<std::uint16_t>(best), order.remaining(), order.limit};
  working_notional_[static_cast<std::size_t>(best)] += notional;
  return true;
}

bool VenueRouter::cancel(OrderId id, InstrumentId instrument, Nanos now) noexcept {
  Route* r = route_of(id, instrument);
  if (r == nullptr || !connected_[r->venue]) return false;  // unknown, or no answer
  if (!venues_[r->venue]->cancel(id, instrument, now)) return false;
  release(*r);
  return true;
}

void VenueRouter::filled(const FillReport& f) noexcept {
  Route* r = route_of(f.order_id, f.instrument);
  if (r == nullptr) return;
  r->remaining -= f.qty;
  working_notional_[r->venue] -= f.qty * r->limit;
  if (r->remaining <= 0) release(*r);
}

void VenueRouter::release(Route& r) noexcept {
  working_notional_[r.venue] -= r.remaining * r.limit;
  r.id = 0;
  r.remaining = 0;
}

void VenueRouter::on_market(InstrumentId instrument, Price price, Nanos now, FillListener& listener) noexcept {
  for (std::size_t v = 0; v < venues_.size(); ++v) {
    if (venues_[v]->working(instrument) == 0) continue;
    if (connected_[v]) {
      Forward forward{*this, listener};
      venues_[v]->deliver(instrument, price, now, forward);
    } else {  // it still trades; we hear of it when it answers again
      Hold hold{*this};
      venues_[v]->deliver(instrument, price, now, hold);
    }
  }
}

std::uint16_t VenueRouter::venue_of(OrderId id, InstrumentId instrument) const noexcept {
  const Route* r = route_of(id, instrument);
  return r != nullptr ? r->venue : 0;
}

bool VenueRouter::answering(OrderId id, InstrumentId instrument) const noexcept {
  const Route* r = route_of(id, instrument);
  return r == nullptr || connected_[r->venue] != 0;
}

void VenueRouter::disconnect(std::uint16_t venue) noexcept {
  if (venue < venues_.size()) connected_[venue] = 0;
}

std::size_t VenueRouter::reconnect(std::uint16_t venue, Nanos now, FillListener& listener) noexcept {
  if (venue >= venues_.size()) return 0;
  connected_[venue] = 1;
  // What it executed while it did not answer: confirmed, in the order it happened.
  std::size_t kept = 0;
  for (const FillReport& f : held_) {
    if (f.venue == venue) {
      filled(f);
      listener.on_fill(f);
    } else {
      held_[kept++] = f;
    }
  }
  held_.resize(kept);
  // The rest of its working orders: cancelled there, then reported (new orders for that exposure go elsewhere).
  std::size_t cancelled = 0;
  for (Route& r : routes_) {
    if (r.id == 0 || r.venue != venue) continue;
    const InstrumentId instrument = static_cast<InstrumentId>((&r - routes_.data()) / slots_);
    const OrderId id = r.id;
    (void)venues_[venue]->cancel(id, instrument, now);  // it knows it: the order was working there
    release(r);
    listener.on_cancelled(id, instrument, now);
    ++cancelled;
  }
  return cancelled;
}

bool VenueRouter::restore(const Order& order, std::uint16_t venue) noexcept {
  if (venue >= venues_.size() || order.instrument >= instruments_) return false;
  Route* slots = &routes_[std::size_t{order.instrument} * slots_];
  for (std::uint32_t k = 0; k < slots_; ++k) {
    if (slots[k].id == 0) {
      if (!venues_[venue]->restore(order)) return false;
      slots[k] = Route{order.id, venue, order.remaining(), order.limit};
      working_notional_[venue] += order.remaining() * order.limit;
      return true;
    }
  }
  return false;
}

void VenueRouter::resume_ids_after(OrderId id) noexcept {
  for (auto& v : venues_) v->resume_ids_after(id);
}

}  // namespace hft_exec
