// Several venues behind the executor (VenueRouter): the venue per order, per-venue limits, a venue that stops
// answering (its orders resolved when it answers again, never guessed; new orders elsewhere), recovery.
#include <gtest/gtest.h>

#include <vector>

#include "helpers.hpp"
#include "hft_exec/router.hpp"

namespace hft_exec_test {
namespace {

enum : std::uint16_t { kLit = 0, kCheap = 1, kSlow = 2 };

VenueConfig venue(double fee_bps, double slippage_bps, Nanos latency_ns, double max_working_notional = 1e12) {
  VenueConfig v{};
  v.exchange.fee_bps = fee_bps;
  v.exchange.slippage_bps = slippage_bps;
  v.exchange.latency_ns = latency_ns;
  v.max_working_notional = max_working_notional;
  return v;
}

// lit: 0.5 + 1 bp; cheap: 0.1 + 0.5 bp but at most 5,000 working; slow: 0.3 + 1 bp, 1 ms away.
ExecutorConfig three_venues() {
  ExecutorConfig c = test_config();
  c.venues = {venue(0.5, 1.0, 100 * kMicro), venue(0.1, 0.5, 500 * kMicro, 5'000.0), venue(0.3, 1.0, 1'000 * kMicro)};
  return c;
}

std::vector<Event> events_of(Executor& ex) {
  std::vector<Event> out(ex.events().begin(), ex.events().end());
  ex.clear_events();
  return out;
}

TEST(VenueRouter, EachOrderGoesToTheCheapestVenueThatCanTakeIt) {
  Executor ex(three_venues(), 3);
  const Decision small = ex.on_prediction(pred(0, 0, 0.6, 100.0, 0.02));  // 25 shares x 100.5 < 5,000
  ASSERT_EQ(small.action, Action::Order);
  auto sent = of_type(events_of(ex), EventType::OrderSent);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].venue, kCheap);
  const Decision big = ex.on_prediction(pred(1, 0, 0.6, 100.0, 0.005));  // 100 shares: over cheap's limit
  ASSERT_EQ(big.action, Action::Order);
  sent = of_type(events_of(ex), EventType::OrderSent);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].venue, kSlow);  // 1.3 bp beats lit's 1.5
  EXPECT_NEAR(ex.router()->working_notional(kCheap) * kUnitsPerTick, 25 * 100.5, 1e-6);
  // The fills come from those venues, with their fees.
  (void)ex.on_prediction(pred(0, 1, 0.6, 100.0, 0.02));
  (void)ex.on_prediction(pred(1, 1, 0.6, 100.0, 0.005));
  const auto fills = of_type(events_of(ex), EventType::Fill);
  ASSERT_EQ(fills.size(), 2u);
  EXPECT_EQ(fills[0].venue, kCheap);
  EXPECT_EQ(fills[0].fee, ex.router()->venue(kCheap).fee(25, fills[0].price));
  EXPECT_EQ(fills[1].venue, kSlow);
  EXPECT_EQ(ex.router()->working_notional(kCheap), 0);
  EXPECT_EQ(ex.position(0), 25);
  EXPECT_EQ(ex.position(1), 100);
}

TEST(VenueRouter, NoVenueCanTakeIt_OrderRefusedByTheVenue) {
  ExecutorConfig c = test_config();
  c.venues = {venue(0.5, 1.0, 100 * kMicro, 1'000.0)};
  Executor ex(c, 1);
  const Decision d = ex.on_prediction(pred(0, 0, 0.6, 100.0, 0.005));  // 100 shares: 10,050 > 1,000
  EXPECT_EQ(d.reason, Reason::VenueRejected);
  EXPECT_EQ(ex.working(0), 0);
}

TEST(VenueRouter, DisconnectedVenue_GetsNoOrderAndItsWorkingOrderIsNeitherTradedTwiceNorClosedOnAGuess) {
  Executor ex(three_venues(), 3);
  (void)ex.on_prediction(pred(0, 0, 0.6, 100.0, 0.02));  // buy 25 at cheap, limit 100.5
  (void)events_of(ex);
  ASSERT_TRUE(ex.disconnect_venue(kCheap));
  // The market runs away from the limit: nothing fills; the signal holds: the working order is the exposure.
  const Decision again = ex.on_prediction(pred(0, 1, 0.6, 101.0, 0.02));
  EXPECT_EQ(again.action, Action::Hold);
  EXPECT_EQ(ex.working(0), 25);
  // Another ticker's order goes elsewhere.
  (void)ex.on_prediction(pred(1, 1, 0.6, 100.0, 0.02));
  auto sent = of_type(events_of(ex), EventType::OrderSent);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].venue, kSlow);
  // The kill switch cancels what answers; the order at the silent venue stays working (state unknown there).
  ex.halt();
  (void)ex.on_prediction(pred(2, 2, 0.5, 50.0));
  auto done = of_type(events_of(ex), EventType::OrderDone);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].instrument, 1u);
  EXPECT_EQ(ex.working(0), 25);
  // It answers again: the rest is cancelled there and closed here, with the reason.
  ASSERT_TRUE(ex.reconnect_venue(kCheap, kOpen + 3 * kMinute));
  done = of_type(events_of(ex), EventType::OrderDone);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].reason, Reason::VenueUnavailable);
  EXPECT_EQ(done[0].qty, 0);  // nothing had executed
  EXPECT_EQ(ex.working(0), 0);
  EXPECT_EQ(ex.position(0), 0);
  EXPECT_EQ(ex.router()->venue(kCheap).working(0), 0u);
  EXPECT_EQ(ex.router()->working_notional(kCheap), 0);
}

TEST(VenueRouter, WhatASilentVenueExecuted_IsConfirmedWhenItAnswersAgain) {
  Executor ex(three_venues(), 1);
  (void)ex.on_prediction(pred(0, 0, 0.6, 100.0, 0.02));  // buy 25 at cheap
  (void)events_of(ex);
  ASSERT_TRUE(ex.disconnect_venue(kCheap));
  (void)ex.on_prediction(pred(0, 1, 0.6, 100.0, 0.02));  // it executes there, unheard
  EXPECT_EQ(count_of(events_of(ex), EventType::Fill), 0u);
  EXPECT_EQ(ex.position(0), 0);
  EXPECT_EQ(ex.working(0), 25);  // still the whole exposure: no second order for it
  ASSERT_TRUE(ex.reconnect_venue(kCheap, kOpen + 2 * kMinute));
  const auto events = events_of(ex);
  const auto fills = of_type(events, EventType::Fill);
  ASSERT_EQ(fills.size(), 1u);
  EXPECT_EQ(fills[0].qty, 25);
  EXPECT_EQ(fills[0].venue, kCheap);
  const auto done = of_type(events, EventType::OrderDone);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].reason, Reason::None);  // filled, not cancelled
  EXPECT_EQ(ex.position(0), 25);
  EXPECT_EQ(ex.working(0), 0);
}

TEST(VenueRouter, RecoveredExecutor_HasEachWorkingOrderBackAtItsVenue) {
  Executor first(three_venues(), 2);
  std::vector<Event> journal;
  const auto feed = [&](Executor& ex, const Prediction& p) {
    const Decision d = ex.on_prediction(p);
    journal.insert(journal.end(), ex.events().begin(), ex.events().end());
    ex.clear_events();
    return d;
  };
  (void)feed(first, pred(0, 0, 0.6, 100.0, 0.02));   // cheap
  (void)feed(first, pred(1, 0, 0.6, 100.0, 0.005));  // slow
  Executor second(three_venues(), 2);
  second.recover(journal);
  EXPECT_EQ(second.router()->working_notional(kCheap), first.router()->working_notional(kCheap));
  EXPECT_EQ(second.router()->working_notional(kSlow), first.router()->working_notional(kSlow));
  EXPECT_EQ(second.router()->venue(kCheap).working(0), 1u);
  EXPECT_EQ(second.router()->venue(kSlow).working(1), 1u);
  // Both go on identically: the same fills from the same venues.
  for (Executor* ex : {&first, &second}) {
    (void)ex->on_prediction(pred(0, 1, 0.6, 100.0, 0.02));
    (void)ex->on_prediction(pred(1, 1, 0.6, 100.0, 0.005));
  }
  const auto a = of_type(first.events(), EventType::Fill), b = of_type(second.events(), EventType::Fill);
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  for (std::size_t k = 0; k < a.size(); ++k) {
    EXPECT_EQ(a[k].order_id, b[k].order_id);
    EXPECT_EQ(a[k].venue, b[k].venue);
    EXPECT_EQ(a[k].fee, b[k].fee);
  }
  EXPECT_EQ(first.cash(), second.cash());
}

TEST(VenueRouter, WithoutVenues_TheSinglePaperExchangeAsBefore) {
  Executor ex(test_config(), 1);
  EXPECT_EQ(ex.router(), nullptr);
  EXPECT_FALSE(ex.disconnect_venue(0));
  (void)ex.on_prediction(pred(0, 0, 0.6, 100.0));
  const auto sent = of_type(ex.events(), EventType::OrderSent);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].venue, 0);
  EXPECT_EQ(paper(ex).working(0), 1u);
}

}  // namespace
}  // namespace hft_exec_test

// ---- What executors that share venues and limits (shards of the tickers) need ---------------------------------
namespace hft_exec_test {
namespace {

TEST(ExecutorShares, FirstOrderId_StartsTheIdSpaceAndRecoveryStaysInIt) {
  ExecutorConfig c = test_config();
  c.first_order_id = 3'000'000'000'001;
  Executor ex(c, 1);
  const Decision d = ex.on_prediction(pred(0, 0, 0.6, 100.0));
  EXPECT_EQ(d.order_id, 3'000'000'000'001u);
  Executor again(c, 1);
  again.recover(std::vector<Event>(ex.events().begin(), ex.events().end()));
  EXPECT_EQ(again.next_order_id(), 3'000'000'000'002u);
}

TEST(ExecutorShares, LowerDailyLossLimit_HaltsAtTheNextDecision) {
  Executor ex(test_config(), 1);
  (void)ex.on_prediction(pred(0, 0, 0.6, 100.0));  // long
  (void)ex.on_prediction(pred(0, 1, 0.6, 100.0));  // filled
  ASSERT_GT(ex.position(0), 0);
  EXPECT_FALSE(ex.halted());
  ex.set_daily_loss_limit(0.0);  // the other shards lost the whole day's allowance
  (void)ex.on_prediction(pred(0, 2, 0.6, 99.99));
  EXPECT_TRUE(ex.halted());
  EXPECT_EQ(ex.halt_reason(), Reason::DailyLossLimit);
}

}  // namespace
}  // namespace hft_exec_test
