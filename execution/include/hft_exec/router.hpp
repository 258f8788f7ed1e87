// Several venues behind one gateway: the router picks a venue per order and keeps each order's venue, and
// resolves the working orders of a venue that stopped answering once it answers again (never on a guess).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "hft_exec/config.hpp"
#include "hft_exec/exchange.hpp"
#include "hft_exec/order.hpp"
#include "hft_exec/types.hpp"

namespace hft_exec {

// Picks, for each order, the connected venue with the lowest all-in cost per share (slippage, fee in basis
// points and fee per share at the order's limit price), then the lowest latency, then the lowest index, among
// those whose working notional stays within their limit with it; refuses the order when none can take it.
// A venue that stops answering (disconnect) gets no order; it keeps executing what it had, and what it
// executed is reported when it answers again (reconnect), when the rest of each of its working orders is
// cancelled and reported as such: the executor counts those orders as working meanwhile, so their exposure is
// never traded twice. Fixed arrays sized at construction: no allocation per order (the held fills of a
// disconnected venue grow a vector, off the common path).
class VenueRouter final : public ExchangeGateway {
 public:
  VenueRouter(const std::vector<VenueConfig>& venues, std::uint32_t instruments, std::uint32_t slots);

  [[nodiscard]] bool send(const Order& order, Nanos now) noexcept override;
  bool cancel(OrderId id, InstrumentId instrument, Nanos now) noexcept override;
  void on_market(InstrumentId instrument, Price price, Nanos now, FillListener& listener) noexcept override;
  [[nodiscard]] std::uint16_t venue_of(OrderId id, InstrumentId instrument) const noexcept override;
  [[nodiscard]] bool answering(OrderId id, InstrumentId instrument) const noexcept override;

  // The venue stops answering: no order is sent there; what it executes is held until it answers again.
  void disconnect(std::uint16_t venue) noexcept;
  // The venue answers again: its fills since the disconnect are reported (in order), then what is left of its
  // working orders is cancelled there and reported through on_cancelled. Returns the orders cancelled.
  std::size_t reconnect(std::uint16_t venue, Nanos now, FillListener& listener) noexcept;
  [[nodiscard]] bool connected(std::uint16_t venue) const noexcept {
    return venue < venues_.size() && connected_[venue] != 0;
  }

  // After a restart: a working order back at its venue (from the journal), and the id high-water mark.
  bool restore(const Order& order, std::uint16_t venue) noexcept;
  void resume_ids_after(OrderId id) noexcept;

  [[nodiscard]] std::uint16_t venues() const noexcept { return static_cast<std::uint16_t>(venues_.size()); }
  [[nodiscard]] const PaperExchange& venue(std::uint16_t v) const noexcept { return *venues_[v]; }
  [[nodiscard]] Money working_notional(std::uint16_t v) const noexcept { return working_notional_[v]; }

 private:
  struct Route {
    OrderId id = 0;  // 0: free
    std::uint16_t venue = 0;
    Qty remaining = 0;
    Price limit = 0;
  };
  // Forwards a venue's fills to the executor, keeping the routes' remaining quantities and notional.
  struct Forward;
  struct Hold;
  Route* route_of(OrderId id, InstrumentId instrument) noexcept;
  [[nodiscard]] const Route* route_of(OrderId id, InstrumentId instrument) const noexcept;
  void filled(const FillReport& f) noexcept;  // route bookkeeping of a reported fill
  void release(Route& r) noexcept;

  std::vector<VenueConfig> config_;
  std::vector<std::unique_ptr<PaperExchange>> venues_;
  std::vector<std::uint8_t> connected_;
  std::vector<Money> working_notional_;  // per venue: sum of remaining x limit of its working orders (ticks x shares)
  std::vector<double> cost_bps_;         // per venue: slippage + fee (per-share fees added per order)
  std::vector<Route> routes_;            // `slots` per instrument
  std::vector<FillReport> held_;         // fills of disconnected venues, not reported yet
  std::uint32_t instruments_, slots_;
};

}  // namespace hft_exec
