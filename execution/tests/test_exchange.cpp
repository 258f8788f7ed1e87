// Paper exchange: latency, slippage, fees, partial fills (FIFO), resting limits, idempotent sends, cancels.
#include <gtest/gtest.h>

#include "helpers.hpp"
#include "hft_exec/exchange.hpp"

namespace {

using namespace hft_exec;
using hft_exec_test::FillRecorder;

constexpr Nanos kLatency = 100'000;

PaperExchangeConfig cfg(Qty max_fill = 0) {
  PaperExchangeConfig c{};
  c.latency_ns = kLatency;
  c.fee_bps = 0.5;
  c.fee_per_share = 0.0;
  c.slippage_bps = 1.0;
  c.max_fill_qty = max_fill;
  return c;
}

Order order(OrderId id, Side side, Qty qty, Price limit, InstrumentId inst = 0, Nanos sent = 0) {
  return Order{id, inst, side, qty, 0, limit, sent, OrderState::Sent};
}

TEST(PaperExchange, BeforeArrival_NoFill) {
  PaperExchange ex(cfg(), 2, 4);
  FillRecorder rec;
  const Nanos t0 = 1'000'000;
  ASSERT_TRUE(ex.send(order(1, Side::Buy, 10, 1'010'000), t0));
  ex.on_market(0, 1'000'000, t0, rec);
  ex.on_market(0, 1'000'000, t0 + kLatency - 1, rec);
  EXPECT_TRUE(rec.fills.empty());
  EXPECT_EQ(ex.working(0), 1u);
  ex.on_market(0, 1'000'000, t0 + kLatency, rec);  // arrival: the first price at or after it
  ASSERT_EQ(rec.fills.size(), 1u);
  EXPECT_EQ(rec.fills[0].order_id, 1u);
  EXPECT_EQ(rec.fills[0].qty, 10);
  EXPECT_EQ(rec.fills[0].ts_ns, t0 + kLatency);
  EXPECT_EQ(ex.working(0), 0u);
}

TEST(PaperExchange, BuyAndSell_SlippageAgainstTheOrder) {
  PaperExchange ex(cfg(), 1, 4);
  EXPECT_EQ(ex.execution_price(Side::Buy, 1'000'000), 1'000'100);  // +1 bp
  EXPECT_EQ(ex.execution_price(Side::Sell, 1'000'000), 999'900);   // -1 bp
  EXPECT_EQ(ex.execution_price(Side::Sell, 1), 1);                 // never below one tick

  FillRecorder rec;
  ASSERT_TRUE(ex.send(order(1, Side::Buy, 5, 1'010'000), 0));
  ASSERT_TRUE(ex.send(order(2, Side::Sell, 7, 990'000), 0));
  ex.on_market(0, 1'000'000, kLatency, rec);
  ASSERT_EQ(rec.fills.size(), 2u);
  for (const FillReport& f : rec.fills) EXPECT_EQ(f.price, f.order_id == 1 ? 1'000'100 : 999'900) << f.order_id;
}

TEST(PaperExchange, ZeroSlippage_FillsAtMarket) {
  PaperExchangeConfig c = cfg();
  c.slippage_bps = 0.0;
  PaperExchange ex(c, 1, 4);
  FillRecorder rec;
  ASSERT_TRUE(ex.send(order(1, Side::Buy, 5, 1'000'000), 0));
  ex.on_market(0, 1'000'000, kLatency, rec);
  ASSERT_EQ(rec.fills.size(), 1u);
  EXPECT_EQ(rec.fills[0].price, 1'000'000);
}

TEST(PaperExchange, Fee_BpsOfNotionalPlusPerShare) {
  PaperExchange bps_only(cfg(), 1, 4);
  // 50 x 1'000'100 ticks x 0.5 bp = 2500.25 -> 2500 (ticks x shares).
  EXPECT_EQ(bps_only.fee(50, 1'000'100), 2'500);
  PaperExchangeConfig c = cfg();
  c.fee_per_share = 0.01;  // 1 cent a share = 100 ticks a share
  PaperExchange with_per_share(c, 1, 4);
  EXPECT_EQ(with_per_share.fee(50, 1'000'100), 2'500 + 50 * 100);

  FillRecorder rec;
  ASSERT_TRUE(with_per_share.send(order(1, Side::Buy, 50, 1'010'000), 0));
  with_per_share.on_market(0, 1'000'000, kLatency, rec);
  ASSERT_EQ(rec.fills.size(), 1u);
  EXPECT_EQ(rec.fills[0].fee, 7'500);
}

TEST(PaperExchange, MaxFillQty_PartialFillsAcrossUpdates) {
  PaperExchange ex(cfg(30), 1, 4);
  FillRecorder rec;
  ASSERT_TRUE(ex.send(order(1, Side::Buy, 100, 1'010'000), 0));
  const Qty expected[] = {30, 30, 30, 10};
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(ex.working(0), 1u) << "update " << k;
    ex.on_market(0, 1'000'000, kLatency + k, rec);
    ASSERT_EQ(rec.fills.size(), static_cast<std::size_t>(k + 1));
    EXPECT_EQ(rec.fills.back().qty, expected[k]);
  }
  EXPECT_EQ(ex.working(0), 0u);
  ex.on_market(0, 1'000'000, kLatency + 10, rec);
  EXPECT_EQ(rec.fills.size(), 4u);
}

TEST(PaperExchange, PartialFills_FifoByArrivalAcrossOrders) {
  PaperExchange ex(cfg(30), 1, 4);
  FillRecorder rec;
  ASSERT_TRUE(ex.send(order(1, Side::Buy, 50, 1'010'000), 0));
  ASSERT_TRUE(ex.send(order(2, Side::Buy, 50, 1'010'000), 10));
  const Nanos t = kLatency + 10;
  ex.on_market(0, 1'000'000, t, rec);      // A 30
  ex.on_market(0, 1'000'000, t + 1, rec);  // A 20, B 10
  ex.on_market(0, 1'000'000, t + 2, rec);  // B 30
  ex.on_market(0, 1'000'000, t + 3, rec);  // B 10
  ASSERT_EQ(rec.fills.size(), 5u);
  const std::pair<OrderId, Qty> expected[] = {{1, 30}, {1, 20}, {2, 10}, {2, 30}, {2, 10}};
  for (std::size_t k = 0; k < 5; ++k) {
    EXPECT_EQ(rec.fills[k].order_id, expected[k].first) << k;
    EXPECT_EQ(rec.fills[k].qty, expected[k].second) << k;
  }
}

TEST(PaperExchange, OlderOrderInLaterSlot_StillFilledFirst) {
  PaperExchange ex(cfg(30), 1, 4);
  FillRecorder rec;
  ASSERT_TRUE(ex.send(order(1, Side::Buy, 50, 1'010'000), 20));  // slot 0, arrives last
  ASSERT_TRUE(ex.send(order(2, Side::Buy, 50, 1'010'000), 0));   // slot 1, arrives first
  ex.on_market(0, 1'000'000, kLatency + 20, rec);
  ASSERT_EQ(rec.fills.size(), 1u);
  EXPECT_EQ(rec.fills[0].order_id, 2u);
}

TEST(PaperExchange, SameArrivalInReusedSlot_LowerIdFilledFirst) {
  // Slots are reused: a newer order can sit in a lower slot than an older one that arrives at the same time.
  PaperExchange ex(cfg(30), 1, 4);
  FillRecorder rec;
  ASSERT_TRUE(ex.send(order(1, Side::Buy, 50, 1'010'000), 0));  // slot 0
  ASSERT_TRUE(ex.send(order(2, Side::Buy, 50, 1'010'000), 0));  // slot 1
  ASSERT_TRUE(ex.cancel(1, 0, 0));                              // frees slot 0
  ASSERT_TRUE(ex.send(order(3, Side::Buy, 50, 1'010'000), 0));  // slot 0, sent after order 2
  ex.on_market(0, 1'000'000, kLatency, rec);
  ASSERT_EQ(rec.fills.size(), 1u);
  EXPECT_EQ(rec.fills[0].order_id, 2u);
  EXPECT_EQ(rec.fills[0].qty, 30);
}

TEST(PaperExchange, FreeSlotBetweenWorkingOrders_BothFillInOneUpdate) {
  // The scan skips free slots and stops after the last working one, wherever it sits.
  PaperExchange ex(cfg(), 1, 4);
  FillRecorder rec;
  ASSERT_TRUE(ex.send(order(1, Side::Buy, 10, 1'010'000), 0));  // slot 0
  ASSERT_TRUE(ex.send(order(2, Side::Buy, 20, 1'010'000), 0));  // slot 1
  ASSERT_TRUE(ex.send(order(3, Side::Sell, 30, 990'000), 0));   // slot 2
  ASSERT_TRUE(ex.cancel(2, 0, 0));
  ex.on_market(0, 1'000'000, kLatency, rec);
  ASSERT_EQ(rec.fills.size(), 2u);
  EXPECT_EQ(rec.fills[0].order_id, 1u);
  EXPECT_EQ(rec.fills[1].order_id, 3u);
  EXPECT_EQ(rec.fills[1].qty, 30);
  EXPECT_EQ(ex.working(0), 0u);
  ex.on_market(0, 1'000'000, kLatency + 1, rec);
  EXPECT_EQ(rec.fills.size(), 2u);
}

TEST(PaperExchange, BuyLimitBelowExecutionPrice_RestsUntilMarketable) {
  PaperExchange ex(cfg(), 1, 4);
  FillRecorder rec;
  ASSERT_TRUE(ex.send(order(1, Side::Buy, 10, 1'000'000), 0));
  ex.on_market(0, 1'000'000, kLatency, rec);  // executes at 1'000'100 > limit
  EXPECT_TRUE(rec.fills.empty());
  EXPECT_EQ(ex.working(0), 1u);
  ex.on_market(0, 999'000, kLatency + 1, rec);  // 999'000 + 100 (99.9 rounded) <= limit
  ASSERT_EQ(rec.fills.size(), 1u);
  EXPECT_EQ(rec.fills[0].price, 999'100);
  EXPECT_EQ(ex.working(0), 0u);
}

TEST(PaperExchange, SellLimitAboveExecutionPrice_RestsUntilMarketable) {
  PaperExchange ex(cfg(), 1, 4);
  FillRecorder rec;
  ASSERT_TRUE(ex.send(order(1, Side::Sell, 10, 1'000'000), 0));
  ex.on_market(0, 1'000'000, kLatency, rec);  // executes at 999'900 < limit
  EXPECT_TRUE(rec.fills.empty());
  ex.on_market(0, 1'001'000, kLatency + 1, rec);
  ASSERT_EQ(rec.fills.size(), 1u);
  EXPECT_EQ(rec.fills[0].price, 1'000'900);
}

TEST(PaperExchange, RestingOlderOrder_DoesNotBlockYoungerMarketable) {
  PaperExchange ex(cfg(30), 1, 4);
  FillRecorder rec;
  ASSERT_TRUE(ex.send(order(1, Side::Buy, 50, 900'000), 0));  // far below the market
  ASSERT_TRUE(ex.send(order(2, Side::Buy, 20, 1'010'000), 10));
  ex.on_market(0, 1'000'000, kLatency + 10, rec);
  ASSERT_EQ(rec.fills.size(), 1u);
  EXPECT_EQ(rec.fills[0].order_id, 2u);
  EXPECT_EQ(ex.working(0), 1u);
}

TEST(PaperExchange, DuplicateClientOrderId_Refused) {
  PaperExchange ex(cfg(), 1, 4);
  ASSERT_TRUE(ex.send(order(5, Side::Buy, 10, 1'010'000), 0));
  EXPECT_FALSE(ex.send(order(5, Side::Buy, 10, 1'010'000), 1));  // re-send
  EXPECT_FALSE(ex.send(order(3, Side::Buy, 10, 1'010'000), 2));  // older id: sent before
  EXPECT_EQ(ex.duplicate_sends(), 2u);
  EXPECT_EQ(ex.working(0), 1u);
  EXPECT_TRUE(ex.send(order(6, Side::Buy, 10, 1'010'000), 3));
  EXPECT_EQ(ex.working(0), 2u);
}

TEST(PaperExchange, DuplicateIdAfterFill_StillRefused) {
  PaperExchange ex(cfg(), 1, 4);
  FillRecorder rec;
  ASSERT_TRUE(ex.send(order(1, Side::Buy, 10, 1'010'000), 0));
  ex.on_market(0, 1'000'000, kLatency, rec);
  ASSERT_EQ(rec.fills.size(), 1u);
  EXPECT_FALSE(ex.send(order(1, Side::Buy, 10, 1'010'000), kLatency + 1));
  ex.on_market(0, 1'000'000, 10 * kLatency, rec);
  EXPECT_EQ(rec.fills.size(), 1u);  // executed once
}

TEST(PaperExchange, Cancel_RemovesWorkingOrder) {
  PaperExchange ex(cfg(), 2, 4);
  FillRecorder rec;
  ASSERT_TRUE(ex.send(order(1, Side::Buy, 10, 1'010'000), 0));
  EXPECT_FALSE(ex.cancel(1, 1, 5));  // wrong instrument
  EXPECT_FALSE(ex.cancel(2, 0, 5));  // unknown id
  EXPECT_FALSE(ex.cancel(1, 9, 5));  // instrument out of range
  EXPECT_EQ(ex.working(0), 1u);
  EXPECT_TRUE(ex.cancel(1, 0, 5));
  EXPECT_EQ(ex.working(0), 0u);
  EXPECT_FALSE(ex.cancel(1, 0, 6));  // already gone
  ex.on_market(0, 1'000'000, kLatency, rec);
  EXPECT_TRUE(rec.fills.empty());
}

TEST(PaperExchange, CancelIdZero_RefusedNotAFreeSlot) {
  PaperExchange ex(cfg(), 1, 2);
  EXPECT_FALSE(ex.cancel(0, 0, 0));
}

TEST(PaperExchange, AfterPartialFillCancel_NoMoreFills) {
  PaperExchange ex(cfg(30), 1, 4);
  FillRecorder rec;
  ASSERT_TRUE(ex.send(order(1, Side::Sell, 100, 990'000), 0));
  ex.on_market(0, 1'000'000, kLatency, rec);
  ASSERT_EQ(rec.fills.size(), 1u);
  EXPECT_TRUE(ex.cancel(1, 0, kLatency + 1));
  ex.on_market(0, 1'000'000, kLatency + 2, rec);
  EXPECT_EQ(rec.fills.size(), 1u);
}

TEST(PaperExchange, InvalidSends_Refused) {
  PaperExchange ex(cfg(), 1, 2);
  EXPECT_FALSE(ex.send(order(1, Side::Buy, 10, 1'000'000, /*inst=*/1), 0));  // unknown instrument
  EXPECT_FALSE(ex.send(order(2, Side::Buy, 0, 1'000'000), 0));               // nothing to trade
  Order done = order(3, Side::Buy, 10, 1'000'000);
  done.filled = 10;
  EXPECT_FALSE(ex.send(done, 0));
  EXPECT_EQ(ex.working(0), 0u);
  EXPECT_EQ(ex.duplicate_sends(), 0u);
}

TEST(PaperExchange, SlotsFull_SendRefused) {
  PaperExchange ex(cfg(), 1, 2);
  ASSERT_TRUE(ex.send(order(1, Side::Buy, 10, 1'000'000), 0));
  ASSERT_TRUE(ex.send(order(2, Side::Buy, 10, 1'000'000), 0));
  EXPECT_FALSE(ex.send(order(3, Side::Buy, 10, 1'000'000), 0));
  EXPECT_EQ(ex.working(0), 2u);
  EXPECT_EQ(ex.duplicate_sends(), 0u);
}

TEST(PaperExchange, Liquidity_PerInstrumentPerUpdate) {
  PaperExchange ex(cfg(30), 2, 4);
  FillRecorder rec;
  ASSERT_TRUE(ex.send(order(1, Side::Buy, 50, 1'010'000, 0), 0));
  ASSERT_TRUE(ex.send(order(2, Side::Buy, 50, 1'010'000, 1), 0));
  ex.on_market(0, 1'000'000, kLatency, rec);
  ex.on_market(1, 1'000'000, kLatency, rec);
  ASSERT_EQ(rec.fills.size(), 2u);
  EXPECT_EQ(rec.fills[0].instrument, 0u);
  EXPECT_EQ(rec.fills[0].qty, 30);
  EXPECT_EQ(rec.fills[1].instrument, 1u);
  EXPECT_EQ(rec.fills[1].qty, 30);
}

TEST(PaperExchange, MarketUpdateForOtherInstrument_DoesNotFill) {
  PaperExchange ex(cfg(), 2, 4);
  FillRecorder rec;
  ASSERT_TRUE(ex.send(order(1, Side::Buy, 50, 1'010'000, 0), 0));
  ex.on_market(1, 1'000'000, kLatency, rec);
  ex.on_market(0, 0, kLatency, rec);  // no price
  ex.on_market(0, -5, kLatency, rec);
  ex.on_market(7, 1'000'000, kLatency, rec);  // out of range: ignored
  EXPECT_TRUE(rec.fills.empty());
}

TEST(PaperExchange, Restore_WorkingOrderKeepsArrivalAndRemaining) {
  PaperExchange ex(cfg(), 1, 4);
  ex.resume_ids_after(10);
  Order o = order(4, Side::Buy, 100, 1'010'000, 0, /*sent=*/1'000);
  o.filled = 60;
  o.state = OrderState::PartiallyFilled;
  ASSERT_TRUE(ex.restore(o));  // an old id, but a restore, not a re-send
  FillRecorder rec;
  ex.on_market(0, 1'000'000, 1'000 + kLatency - 1, rec);
  EXPECT_TRUE(rec.fills.empty());
  ex.on_market(0, 1'000'000, 1'000 + kLatency, rec);
  ASSERT_EQ(rec.fills.size(), 1u);
  EXPECT_EQ(rec.fills[0].order_id, 4u);
  EXPECT_EQ(rec.fills[0].qty, 40);
}

TEST(PaperExchange, ResumeIdsAfter_RefusesIdsAlreadySent) {
  PaperExchange ex(cfg(), 1, 4);
  ex.resume_ids_after(10);
  EXPECT_FALSE(ex.send(order(10, Side::Buy, 1, 1'000'000), 0));
  EXPECT_TRUE(ex.send(order(11, Side::Buy, 1, 1'000'000), 0));
  ex.resume_ids_after(5);  // never lowers the mark
  EXPECT_FALSE(ex.send(order(8, Side::Buy, 1, 1'000'000), 0));
  Order restored = order(3, Side::Buy, 1, 1'000'000);
  ASSERT_TRUE(ex.restore(restored));
  EXPECT_FALSE(ex.send(order(11, Side::Buy, 1, 1'000'000), 0));  // the mark survived the restore
}

}  // namespace
