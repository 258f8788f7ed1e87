// Pre-trade risk: check_order and the token bucket in isolation, then every rule through the executor
// (stale guard, price band, daily loss limit, kill switch included).
#include <gtest/gtest.h>

#include <thread>

#include "helpers.hpp"
#include "hft_exec/risk.hpp"

namespace {

using namespace hft_exec;
using namespace hft_exec_test;

constexpr Price kPx100 = 1'000'000;  // 100.00 in ticks

// ---- TokenBucket --------------------------------------------------------------------------------------------

TEST(TokenBucket, Burst_ThenEmpty) {
  TokenBucket b(10.0, 3.0);
  EXPECT_TRUE(b.try_take(0));
  EXPECT_TRUE(b.try_take(0));
  EXPECT_TRUE(b.try_take(0));
  EXPECT_FALSE(b.try_take(0));
  EXPECT_FALSE(b.try_take(0));
}

TEST(TokenBucket, Refill_OneTokenPerIntervalAtRate) {
  TokenBucket b(10.0, 1.0);  // one token per 100 ms
  ASSERT_TRUE(b.try_take(kSecond));
  EXPECT_FALSE(b.try_take(kSecond + 50'000'000));  // half a token
  EXPECT_TRUE(b.try_take(kSecond + 100'000'000));  // a whole one
  EXPECT_FALSE(b.try_take(kSecond + 100'000'000));
}

TEST(TokenBucket, LongIdle_RefillCappedAtBurst) {
  TokenBucket b(100.0, 2.0);
  ASSERT_TRUE(b.try_take(0));
  ASSERT_TRUE(b.try_take(0));
  ASSERT_FALSE(b.try_take(0));
  EXPECT_TRUE(b.try_take(kHour));
  EXPECT_TRUE(b.try_take(kHour));
  EXPECT_FALSE(b.try_take(kHour));  // two, not 360'000
}

TEST(TokenBucket, TimeGoingBackwards_NoRefill) {
  TokenBucket b(10.0, 1.0);
  ASSERT_TRUE(b.try_take(10 * kSecond));
  EXPECT_FALSE(b.try_take(5 * kSecond));
  EXPECT_FALSE(b.try_take(10 * kSecond));
  EXPECT_TRUE(b.try_take(10 * kSecond + 100'000'000));
}

// ---- check_order --------------------------------------------------------------------------------------------

RiskConfig risk() { return RiskConfig{}; }  // 1000 shares, 1e6 gross, 1e5 per order, 4 open orders

Exposure flat() { return Exposure{0, 0, 0, 0, kPx100}; }

TEST(Risk, OrderWithinAllLimits_Passes) {
  TokenBucket b(50, 20);
  EXPECT_EQ(check_order(50, 1'005'000, flat(), risk(), b, 0), Reason::None);
  EXPECT_DOUBLE_EQ(b.tokens(), 19.0);
}

TEST(Risk, MaxOrderNotionalExceeded_RejectsOrder) {
  TokenBucket b(50, 20);
  // 1001 x 100.00 = 100'100 > 100'000; limit price, not market, is what counts.
  EXPECT_EQ(check_order(1'001, kPx100, flat(), risk(), b, 0), Reason::MaxOrderNotional);
  EXPECT_EQ(check_order(-1'001, kPx100, flat(), risk(), b, 0), Reason::MaxOrderNotional);
  EXPECT_EQ(check_order(1'000, 1'000'100, flat(), risk(), b, 0), Reason::MaxOrderNotional);
  EXPECT_DOUBLE_EQ(b.tokens(), 20.0);
}

TEST(Risk, OrderNotionalAtLimit_Passes) {
  TokenBucket b(50, 20);
  EXPECT_EQ(check_order(1'000, kPx100, flat(), risk(), b, 0), Reason::None);
}

TEST(Risk, MaxPositionExceeded_RejectsOrder) {
  RiskConfig c = risk();
  c.max_order_notional = 1e9;
  TokenBucket b(50, 20);
  const Exposure e{900, 50, 1, 950 * kPx100, kPx100};
  EXPECT_EQ(check_order(51, kPx100, e, c, b, 0), Reason::MaxPosition);  // 1001 with working
  EXPECT_EQ(check_order(50, kPx100, e, c, b, 0), Reason::None);         // exactly 1000
  const Exposure s{-900, -100, 0, 1'000 * kPx100, kPx100};
  EXPECT_EQ(check_order(-1, kPx100, s, c, b, 0), Reason::MaxPosition);
  EXPECT_EQ(check_order(2'001, kPx100, s, c, b, 0), Reason::MaxPosition);  // flips past +1000
  EXPECT_EQ(check_order(1'900, kPx100, s, c, b, 0), Reason::None);
}

TEST(Risk, MaxPositionCountsWorkingOrders_NotJustPosition) {
  TokenBucket b(50, 20);
  const Exposure e{0, 990, 2, 990 * kPx100, kPx100};
  EXPECT_EQ(check_order(20, kPx100, e, risk(), b, 0), Reason::MaxPosition);
}

TEST(Risk, MaxGrossNotionalExceeded_RejectsAddingOrder) {
  RiskConfig c = risk();
  c.max_gross_notional = 10'000.0;
  TokenBucket b(50, 20);
  // This instrument: 50 @ 100 = 5'000; all instruments: 9'000. Buying 20 more -> 11'000.
  const Exposure e{50, 0, 0, 9'000 * kTicksPerUnit, kPx100};
  EXPECT_EQ(check_order(20, kPx100, e, c, b, 0), Reason::MaxGrossNotional);
  EXPECT_EQ(check_order(10, kPx100, e, c, b, 0), Reason::None);  // exactly 10'000
}

TEST(Risk, GrossAlreadyOverLimit_ReducingOrderPasses) {
  RiskConfig c = risk();
  c.max_gross_notional = 10'000.0;
  TokenBucket b(50, 20);
  const Exposure e{50, 0, 0, 15'000 * kTicksPerUnit, kPx100};                  // over the limit (prices moved)
  EXPECT_EQ(check_order(-20, kPx100, e, c, b, 0), Reason::None);               // 13'000 after, but reducing
  EXPECT_EQ(check_order(-50, kPx100, e, c, b, 0), Reason::None);               // closing
  EXPECT_EQ(check_order(-100, kPx100, e, c, b, 0), Reason::None);              // flip to -50: same exposure
  EXPECT_EQ(check_order(-101, kPx100, e, c, b, 0), Reason::MaxGrossNotional);  // flip adds exposure
  EXPECT_EQ(check_order(1, kPx100, e, c, b, 0), Reason::MaxGrossNotional);
}

TEST(Risk, OpenOrderLimitReached_RejectsOrder) {
  TokenBucket b(50, 20);
  Exposure e = flat();
  e.open_orders = 4;
  EXPECT_EQ(check_order(10, kPx100, e, risk(), b, 0), Reason::TooManyOpenOrders);
  e.open_orders = 3;
  EXPECT_EQ(check_order(10, kPx100, e, risk(), b, 0), Reason::None);
}

TEST(Risk, TokenBucketEmpty_RejectsOrderRate) {
  TokenBucket b(1.0, 2.0);
  EXPECT_EQ(check_order(10, kPx100, flat(), risk(), b, 0), Reason::None);
  EXPECT_EQ(check_order(10, kPx100, flat(), risk(), b, 0), Reason::None);
  EXPECT_EQ(check_order(10, kPx100, flat(), risk(), b, 0), Reason::OrderRate);
  EXPECT_EQ(check_order(10, kPx100, flat(), risk(), b, kSecond), Reason::None);  // refilled one
  EXPECT_EQ(check_order(10, kPx100, flat(), risk(), b, kSecond), Reason::OrderRate);
}

TEST(Risk, RejectedOrders_SpendNoToken) {
  TokenBucket b(0.001, 1.0);  // one token, practically no refill
  Exposure full = flat();
  full.open_orders = 4;
  for (int k = 0; k < 5; ++k) {
    EXPECT_EQ(check_order(2'000, kPx100, flat(), risk(), b, k), Reason::MaxOrderNotional);
    EXPECT_EQ(check_order(10, kPx100, full, risk(), b, k), Reason::TooManyOpenOrders);
  }
  EXPECT_DOUBLE_EQ(b.tokens(), 1.0);
  EXPECT_EQ(check_order(10, kPx100, flat(), risk(), b, 10), Reason::None);
  EXPECT_EQ(check_order(10, kPx100, flat(), risk(), b, 11), Reason::OrderRate);
}

TEST(Risk, SeveralRulesFail_FirstInFixedOrderReported) {
  RiskConfig c = risk();
  c.max_gross_notional = 1.0;
  TokenBucket b(0.001, 1.0);
  ASSERT_TRUE(b.try_take(0));  // empty
  Exposure e{990, 0, 4, 990 * kPx100, kPx100};
  EXPECT_EQ(check_order(1'001, kPx100, e, c, b, 1), Reason::MaxOrderNotional);
  EXPECT_EQ(check_order(11, kPx100, e, c, b, 1), Reason::MaxPosition);
  EXPECT_EQ(check_order(5, kPx100, e, c, b, 1), Reason::MaxGrossNotional);
  EXPECT_EQ(check_order(-5, kPx100, e, c, b, 1), Reason::TooManyOpenOrders);
  e.open_orders = 0;
  EXPECT_EQ(check_order(-5, kPx100, e, c, b, 1), Reason::OrderRate);
}

TEST(PriceBand, NoTradeYet_NothingOutside) { EXPECT_FALSE(outside_band(5 * kPx100, 0, 0.10)); }

TEST(PriceBand, WithinBand_NotOutside) {
  EXPECT_FALSE(outside_band(1'099'000, kPx100, 0.10));
  EXPECT_FALSE(outside_band(901'000, kPx100, 0.10));
  EXPECT_FALSE(outside_band(kPx100, kPx100, 0.0));
}

TEST(PriceBand, ExactlyAtTheBand_Inside) {
  // |price - last| > band x last, multiplied out: exactly 10 % away is inside (1.1e6 / 1e6 - 1 in doubles
  // is a hair above 0.1, so the divided form called it outside).
  EXPECT_FALSE(outside_band(1'100'000, kPx100, 0.10));
  EXPECT_FALSE(outside_band(900'000, kPx100, 0.10));
  EXPECT_TRUE(outside_band(1'100'001, kPx100, 0.10));
  EXPECT_TRUE(outside_band(899'999, kPx100, 0.10));
}

TEST(PriceBand, BeyondBand_Outside) {
  EXPECT_TRUE(outside_band(1'101'000, kPx100, 0.10));
  EXPECT_TRUE(outside_band(899'000, kPx100, 0.10));
  EXPECT_TRUE(outside_band(1'000'001, kPx100, 0.0));
}

// ---- Through the executor -----------------------------------------------------------------------------------

Decision feed(Executor& ex, const Prediction& p) { return ex.on_prediction(p); }

TEST(ExecutorRisk, MaxOrderNotionalExceeded_RejectsAndSendsNothing) {
  ExecutorConfig c = test_config();
  c.risk.max_order_notional = 5'000.0;  // 50 shares x 100.50 limit = 5'025
  Executor ex(c, 1);
  const Decision d = feed(ex, pred(0, 0, 0.6, 100.0));
  EXPECT_EQ(d.action, Action::Reject);
  EXPECT_EQ(d.reason, Reason::MaxOrderNotional);
  EXPECT_EQ(d.target, 50);
  EXPECT_EQ(d.order_id, 0u);
  EXPECT_EQ(count_of(ex.events(), EventType::OrderSent), 0u);
  const auto rejected = of_type(ex.events(), EventType::Rejected);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].reason, Reason::MaxOrderNotional);
  EXPECT_EQ(rejected[0].qty, 50);
  EXPECT_EQ(ex.working(0), 0);
  EXPECT_EQ(paper(ex).working(0), 0u);
  EXPECT_EQ(ex.next_order_id(), 1u);
  EXPECT_EQ(ex.counters().by_reason[static_cast<std::size_t>(Reason::MaxOrderNotional)], 1u);
  // A calmer size fits: 25 x 100.50.
  const Decision ok = feed(ex, pred(0, 1, 0.6, 100.0, 0.02));
  EXPECT_EQ(ok.action, Action::Order);
  EXPECT_EQ(ok.qty, 25);
}

TEST(ExecutorRisk, TargetAboveMaxPosition_CappedSoOrderStaysWithinLimit) {
  ExecutorConfig c = test_config();
  c.risk.max_position = 30;
  Executor ex(c, 1);
  const Decision d = feed(ex, pred(0, 0, 0.6, 100.0));
  EXPECT_EQ(d.action, Action::Order);
  EXPECT_EQ(d.target, 30);
  EXPECT_EQ(d.qty, 30);
  // The flip from +30 to -30 trades 60 but never holds more than 30.
  const Decision flip = feed(ex, pred(0, 1, 0.4, 100.0));
  EXPECT_EQ(flip.action, Action::Order);
  EXPECT_EQ(flip.qty, -60);
  EXPECT_EQ(ex.position(0) + ex.working(0), -30);
}

TEST(ExecutorRisk, MaxGrossNotionalExceeded_RejectsAddingOrderOnOtherInstrument) {
  ExecutorConfig c = test_config();
  c.risk.max_gross_notional = 5'200.0;
  Executor ex(c, 2);
  ASSERT_EQ(feed(ex, pred(0, 0, 0.6, 100.0)).action, Action::Order);  // 50 x 100 = 5'000 gross
  EXPECT_EQ(ex.gross(), 50 * ticks(100.0));
  const Decision d = feed(ex, pred(1, 0, 0.6, 100.0));  // would make 10'000
  EXPECT_EQ(d.action, Action::Reject);
  EXPECT_EQ(d.reason, Reason::MaxGrossNotional);
  EXPECT_EQ(ex.working(1), 0);
  EXPECT_EQ(ex.gross(), 50 * ticks(100.0));
}

TEST(ExecutorRisk, GrossOverLimitAfterPriceRise_ReducingOrderPasses) {
  ExecutorConfig c = test_config();
  c.risk.max_gross_notional = 5'200.0;
  Executor ex(c, 2);
  ASSERT_EQ(feed(ex, pred(0, 0, 0.6, 100.0)).action, Action::Order);
  ASSERT_EQ(feed(ex, pred(0, 1, 0.6, 100.0)).action, Action::Hold);  // fills
  ASSERT_EQ(feed(ex, pred(0, 2, 0.6, 109.0)).action, Action::Hold);  // 50 x 109 = 5'450 > 5'200
  ASSERT_EQ(ex.position(0), 50);
  ASSERT_GT(ex.gross(), ticks(5'200.0));
  EXPECT_EQ(feed(ex, pred(1, 2, 0.6, 100.0)).reason, Reason::MaxGrossNotional);
  const Decision d = feed(ex, pred(0, 3, 0.5, 109.0));  // exit long: reduces exposure
  EXPECT_EQ(d.action, Action::Order);
  EXPECT_EQ(d.qty, -50);
}

TEST(ExecutorRisk, OpenOrderLimitReached_RejectsTooManyOpenOrders) {
  ExecutorConfig c = test_config();
  c.risk.max_open_orders = 2;
  c.exchange.latency_ns = kHour;  // nothing arrives during the test
  Executor ex(c, 1);
  ASSERT_EQ(feed(ex, pred(0, 0, 0.6, 100.0)).qty, 50);
  ASSERT_EQ(feed(ex, pred(0, 1, 0.4, 100.0)).qty, -100);
  ASSERT_EQ(ex.open_orders(0), 2u);
  const Decision d = feed(ex, pred(0, 2, 0.6, 100.0));  // would buy 100 back
  EXPECT_EQ(d.action, Action::Reject);
  EXPECT_EQ(d.reason, Reason::TooManyOpenOrders);
  EXPECT_EQ(ex.open_orders(0), 2u);
  EXPECT_EQ(ex.working(0), -50);
  EXPECT_EQ(paper(ex).working(0), 2u);
}

TEST(ExecutorRisk, OrderRateExceeded_RejectsUntilRefill) {
  ExecutorConfig c = test_config();
  c.risk.orders_per_second = 1.0;
  c.risk.order_burst = 1.0;
  Executor ex(c, 3);
  const Nanos ts = kOpen;
  EXPECT_EQ(feed(ex, pred_at(0, ts, ts + 1'000, 0.6, 100.0)).action, Action::Order);
  const Decision limited = feed(ex, pred_at(1, ts, ts + 2'000, 0.6, 100.0));
  EXPECT_EQ(limited.action, Action::Reject);
  EXPECT_EQ(limited.reason, Reason::OrderRate);
  // A second later a token is back.
  EXPECT_EQ(feed(ex, pred_at(2, ts, ts + 2 * kSecond, 0.6, 100.0)).action, Action::Order);
  EXPECT_EQ(feed(ex, pred_at(1, ts + kMinute, ts + kMinute + 1, 0.6, 100.0)).action, Action::Order);
  EXPECT_EQ(ex.counters().by_reason[static_cast<std::size_t>(Reason::OrderRate)], 1u);
}

TEST(ExecutorRisk, RiskRejectedOrder_SpendsNoRateToken) {
  ExecutorConfig c = test_config();
  c.risk.orders_per_second = 0.001;
  c.risk.order_burst = 1.0;
  c.risk.max_order_notional = 6'000.0;
  Executor ex(c, 3);
  const Nanos ts = kOpen;
  // 100 shares (calm market) x 100.50 = 10'050: over the order notional.
  EXPECT_EQ(feed(ex, pred_at(1, ts, ts + 1, 0.6, 100.0, 0.005)).reason, Reason::MaxOrderNotional);
  EXPECT_EQ(feed(ex, pred_at(0, ts, ts + 2, 0.6, 100.0)).action, Action::Order);  // the token was still there
  EXPECT_EQ(feed(ex, pred_at(2, ts, ts + 3, 0.6, 100.0)).reason, Reason::OrderRate);
}

TEST(ExecutorRisk, StalePrediction_RejectedWithoutMarkingOrTrading) {
  Executor ex(test_config(), 1);
  const Nanos ts = kOpen;
  const Decision d = feed(ex, pred_at(0, ts, ts + 120 * kSecond + 1, 0.6, 100.0));
  EXPECT_EQ(d.action, Action::Reject);
  EXPECT_EQ(d.reason, Reason::StalePrediction);
  EXPECT_EQ(ex.last_price(0), 0);
  EXPECT_EQ(ex.signal(0), 0);
  EXPECT_EQ(count_of(ex.events(), EventType::OrderSent), 0u);
  const auto seen = of_type(ex.events(), EventType::PredictionSeen);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].price, 0);
  EXPECT_EQ(seen[0].reason, Reason::StalePrediction);
  EXPECT_EQ(seen[0].bar_ts_ns, ts);
  // It was processed: the same bar again is a duplicate, even if fresh now.
  EXPECT_EQ(feed(ex, pred_at(0, ts, ts + 1, 0.6, 100.0)).reason, Reason::DuplicatePrediction);
}

TEST(ExecutorRisk, PredictionAtMaxAge_Accepted) {
  Executor ex(test_config(), 1);
  const Nanos ts = kOpen;
  EXPECT_EQ(feed(ex, pred_at(0, ts, ts + 120 * kSecond, 0.6, 100.0)).action, Action::Order);
}

TEST(ExecutorRisk, StaleWhilePositioned_EquityUnchanged) {
  Executor ex(test_config(), 1);
  ASSERT_EQ(feed(ex, pred(0, 0, 0.6, 100.0)).action, Action::Order);
  ASSERT_EQ(feed(ex, pred(0, 1, 0.6, 100.0)).action, Action::Hold);  // filled
  ASSERT_EQ(ex.position(0), 50);
  const Money equity = ex.equity();
  const Nanos ts = kOpen + 2 * kMinute;
  EXPECT_EQ(feed(ex, pred_at(0, ts, ts + 5 * kMinute, 0.1, 105.0)).reason, Reason::StalePrediction);
  EXPECT_EQ(ex.equity(), equity);
  EXPECT_EQ(ex.last_price(0), ticks(100.0));
  EXPECT_EQ(ex.signal(0), 1);
}

TEST(ExecutorRisk, GarbageBarTimeFarInPast_StaleNotOverflowing) {
  Executor ex(test_config(), 1);
  // recv - ts does not fit in int64: the prediction is ancient, not fresh.
  const Decision d = feed(ex, pred_at(0, INT64_MIN + 1, kOpen, 0.6, 100.0));
  EXPECT_EQ(d.reason, Reason::StalePrediction);
  EXPECT_EQ(count_of(ex.events(), EventType::OrderSent), 0u);
}

TEST(ExecutorRisk, GapConfirmedBySecondConsistentPrint_Accepted) {
  Executor ex(test_config(), 1);
  ASSERT_EQ(feed(ex, pred(0, 0, 0.5, 100.0)).action, Action::Hold);
  EXPECT_EQ(feed(ex, pred(0, 1, 0.5, 130.0)).reason, Reason::PriceBand);  // +30 %: refused once
  EXPECT_EQ(ex.last_price(0), ticks(100.0));
  const Decision confirmed = feed(ex, pred(0, 2, 0.5, 131.0));  // within the band of 130: the market moved
  EXPECT_NE(confirmed.action, Action::Reject);
  EXPECT_EQ(ex.last_price(0), ticks(131.0));
  EXPECT_EQ(feed(ex, pred(0, 3, 0.5, 100.0)).reason, Reason::PriceBand);  // the old level is now the outlier
}

TEST(ExecutorRisk, BarTimeFromTheFuture_RejectedAndDoesNotPoisonDedupe) {
  Executor ex(test_config(), 1);
  const Nanos ts = kOpen + 10 * kMinute;
  EXPECT_EQ(feed(ex, pred_at(0, ts + kDay, ts, 0.6, 100.0)).reason, Reason::FutureBarTime);
  EXPECT_EQ(feed(ex, pred_at(0, ts, ts + 1, 0.6, 100.0)).action, Action::Order);  // later real bars still count
}

TEST(ExecutorRisk, PriceOutsideBand_RejectedAndMarksUnchanged) {
  Executor ex(test_config(), 1);
  ASSERT_EQ(feed(ex, pred(0, 0, 0.6, 100.0)).action, Action::Order);
  ASSERT_EQ(feed(ex, pred(0, 1, 0.6, 100.0)).action, Action::Hold);  // filled
  ASSERT_EQ(ex.position(0), 50);
  const Money equity = ex.equity(), gross = ex.gross();
  ex.clear_events();
  const Decision bad = feed(ex, pred(0, 2, 0.1, 115.0));  // +15 %: a bad tick
  EXPECT_EQ(bad.action, Action::Reject);
  EXPECT_EQ(bad.reason, Reason::PriceBand);
  EXPECT_EQ(ex.last_price(0), ticks(100.0));
  EXPECT_EQ(ex.equity(), equity);
  EXPECT_EQ(ex.gross(), gross);
  EXPECT_EQ(ex.signal(0), 1);  // p = 0.1 did not reach the strategy
  ASSERT_EQ(ex.events().size(), 1u);
  EXPECT_EQ(ex.events()[0].type, EventType::PredictionSeen);
  EXPECT_EQ(ex.events()[0].price, ticks(115.0));  // the refused print, journaled
  EXPECT_EQ(ex.events()[0].reason, Reason::PriceBand);
  EXPECT_EQ(feed(ex, pred(0, 3, 0.6, 88.0)).reason, Reason::PriceBand);  // -12 %, and far from 115
  // Back inside the band of the last good price.
  const Decision good = feed(ex, pred(0, 4, 0.6, 105.0));
  EXPECT_NE(good.action, Action::Reject);
  EXPECT_EQ(ex.last_price(0), ticks(105.0));
  EXPECT_EQ(ex.equity(), equity + 50 * (ticks(105.0) - ticks(100.0)));
}

TEST(ExecutorRisk, BadTick_DoesNotFillWorkingOrder) {
  Executor ex(test_config(), 1);
  ASSERT_EQ(feed(ex, pred(0, 0, 0.6, 100.0)).action, Action::Order);  // buy 50, limit 100.50
  EXPECT_EQ(feed(ex, pred(0, 1, 0.6, 89.0)).reason, Reason::PriceBand);
  EXPECT_EQ(ex.position(0), 0);
  EXPECT_EQ(count_of(ex.events(), EventType::Fill), 0u);
  ASSERT_NE(feed(ex, pred(0, 2, 0.6, 95.0)).action, Action::Reject);
  EXPECT_EQ(ex.position(0), 50);
  const auto fills = of_type(ex.events(), EventType::Fill);
  ASSERT_EQ(fills.size(), 1u);
  EXPECT_EQ(fills[0].price, ticks(95.0) + 95);  // 1 bp slippage on 95.00
}

TEST(ExecutorRisk, FirstPrice_NoBandToCheck) {
  Executor ex(test_config(), 1);
  EXPECT_NE(feed(ex, pred(0, 0, 0.5, 5'000.0)).action, Action::Reject);
  EXPECT_EQ(ex.last_price(0), ticks(5'000.0));
}

// Long 50 at 100.01 (+0.25 fee) on instrument 0 and a resting sell on instrument 1; then instrument 0
// drops to 97: a loss of 150.75 against a limit of 100.
class DailyLoss : public ::testing::Test {
 protected:
  static ExecutorConfig config() {
    ExecutorConfig c = test_config();
    c.risk.daily_loss_limit = 100.0;
    return c;
  }
  void SetUp() override {
    ASSERT_EQ(ex.on_prediction(pred(0, 0, 0.6, 100.0)).action, Action::Order);
    ASSERT_EQ(ex.on_prediction(pred(1, 0, 0.4, 100.0)).action, Action::Order);  // sell 50, limit 99.50
    ASSERT_EQ(ex.on_prediction(pred(0, 1, 0.6, 100.0)).action, Action::Hold);   // fills
    ASSERT_EQ(ex.on_prediction(pred(1, 1, 0.4, 99.0)).action, Action::Hold);    // 98.99 < 99.50: rests
    ASSERT_EQ(ex.position(0), 50);
    ASSERT_EQ(ex.open_orders(1), 1u);
    ex.clear_events();
  }
  Executor ex{config(), 2};
};

TEST_F(DailyLoss, LossReachesLimit_HaltsAndCancelsWorkingOrders) {
  const Decision d = ex.on_prediction(pred(0, 2, 0.6, 97.0));
  EXPECT_EQ(d.action, Action::Reject);
  EXPECT_EQ(d.reason, Reason::DailyLossLimit);
  EXPECT_EQ(ex.day_pnl(), -(50 * 1'000'100 + 2'500) + 50 * ticks(97.0));
  EXPECT_TRUE(ex.halted());
  EXPECT_EQ(ex.halt_reason(), Reason::DailyLossLimit);
  EXPECT_EQ(ex.open_orders(1), 0u);
  EXPECT_EQ(ex.working(1), 0);
  EXPECT_EQ(paper(ex).working(1), 0u);
  const auto done = of_type(ex.events(), EventType::OrderDone);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].order_id, 2u);
  EXPECT_EQ(done[0].reason, Reason::DailyLossLimit);
  const auto halts = of_type(ex.events(), EventType::Halt);
  ASSERT_EQ(halts.size(), 1u);
  EXPECT_EQ(halts[0].reason, Reason::DailyLossLimit);
  EXPECT_EQ(ex.position(0), 50);  // a halt stops trading; it does not liquidate
}

TEST_F(DailyLoss, LossJustAboveLimit_NoHalt) {
  // Down to 98.00: loss 100.75 -> halt; 98.05: 98.25 -> no halt.
  const Decision d = ex.on_prediction(pred(0, 2, 0.6, 98.05));
  EXPECT_NE(d.reason, Reason::DailyLossLimit);
  EXPECT_FALSE(ex.halted());
  EXPECT_EQ(ex.on_prediction(pred(0, 3, 0.6, 98.0)).reason, Reason::DailyLossLimit);
}

TEST_F(DailyLoss, HaltedForTheDay_RejectsEvenWhenPriceRecovers) {
  ASSERT_EQ(ex.on_prediction(pred(0, 2, 0.6, 97.0)).reason, Reason::DailyLossLimit);
  const Decision later = ex.on_prediction(pred(1, 5, 0.4, 100.0));  // would sell again
  EXPECT_EQ(later.action, Action::Reject);
  EXPECT_EQ(later.reason, Reason::DailyLossLimit);
  EXPECT_EQ(ex.on_prediction(pred(0, 300, 0.6, 99.5)).reason, Reason::DailyLossLimit);
  EXPECT_EQ(count_of(ex.events(), EventType::OrderSent), 0u);
}

TEST_F(DailyLoss, NextUtcDay_ResumesWithFreshDay) {
  ASSERT_EQ(ex.on_prediction(pred(0, 2, 0.6, 97.0)).reason, Reason::DailyLossLimit);
  ex.clear_events();
  const Nanos ts = kOpen + kDay;
  const Decision d = ex.on_prediction(pred_at(0, ts, ts + kRecvDelay, 0.4, 97.0));  // flip short
  EXPECT_FALSE(ex.halted());
  EXPECT_EQ(ex.halt_reason(), Reason::None);
  EXPECT_EQ(d.action, Action::Order);
  EXPECT_EQ(d.qty, -101);  // 50 long -> 51 short (50 / (97 x 0.01) = 51.5)
  EXPECT_EQ(ex.day_pnl(), 0);
  const auto resumes = of_type(ex.events(), EventType::Resume);
  ASSERT_EQ(resumes.size(), 1u);
  EXPECT_EQ(resumes[0].reason, Reason::DailyLossLimit);
}

TEST_F(DailyLoss, JustBeforeMidnightUtc_StillHalted) {
  ASSERT_EQ(ex.on_prediction(pred(0, 2, 0.6, 97.0)).reason, Reason::DailyLossLimit);
  const Nanos ts = kDay0 + kDay - 1;
  EXPECT_EQ(ex.on_prediction(pred_at(0, ts, ts + 1, 0.4, 97.0)).reason, Reason::DailyLossLimit);
  EXPECT_EQ(ex.on_prediction(pred_at(0, ts + 1, ts + 2, 0.4, 97.0)).action, Action::Order);
}

TEST_F(DailyLoss, OperatorResume_LiftsHaltButLimitReEngagesSameDay) {
  ASSERT_EQ(ex.on_prediction(pred(0, 2, 0.6, 97.0)).reason, Reason::DailyLossLimit);
  ex.resume(kOpen + 3 * kMinute);
  EXPECT_FALSE(ex.halted());
  EXPECT_EQ(ex.on_prediction(pred(0, 4, 0.6, 97.0)).reason, Reason::DailyLossLimit);
}

TEST_F(DailyLoss, KillSwitchDuringLossHalt_NotLiftedByNextDay) {
  ASSERT_EQ(ex.on_prediction(pred(0, 2, 0.6, 97.0)).reason, Reason::DailyLossLimit);
  ex.halt();
  const Nanos ts = kOpen + kDay;
  const Decision d = ex.on_prediction(pred_at(0, ts, ts + kRecvDelay, 0.4, 97.0));
  EXPECT_EQ(d.reason, Reason::KillSwitch);
  EXPECT_EQ(ex.halt_reason(), Reason::KillSwitch);
  EXPECT_TRUE(ex.halted());
}

// Kill switch: a working buy on instrument 0 (latency long enough that it has not arrived).
class KillSwitch : public ::testing::Test {
 protected:
  static ExecutorConfig config() {
    ExecutorConfig c = test_config();
    c.exchange.latency_ns = kHour;
    return c;
  }
  void SetUp() override {
    ASSERT_EQ(ex.on_prediction(pred(0, 0, 0.6, 100.0)).action, Action::Order);
    ASSERT_EQ(ex.open_orders(0), 1u);
    ex.clear_events();
  }
  Executor ex{config(), 2};
};

TEST_F(KillSwitch, Halt_TakesEffectBeforeNextDecision) {
  ex.halt();
  EXPECT_TRUE(ex.halted());
  const Decision d = ex.on_prediction(pred(1, 1, 0.9, 100.0));  // would open a position
  EXPECT_EQ(d.action, Action::Reject);
  EXPECT_EQ(d.reason, Reason::KillSwitch);
  EXPECT_EQ(ex.halt_reason(), Reason::KillSwitch);
  EXPECT_EQ(ex.next_order_id(), 2u);
  EXPECT_EQ(count_of(ex.events(), EventType::OrderSent), 0u);
}

TEST_F(KillSwitch, Halt_CancelsWorkingOrders) {
  ex.halt();
  (void)ex.on_prediction(pred(1, 1, 0.5, 100.0));
  EXPECT_EQ(ex.open_orders(0), 0u);
  EXPECT_EQ(ex.working(0), 0);
  EXPECT_EQ(ex.gross(), 0);
  EXPECT_EQ(paper(ex).working(0), 0u);
  const auto done = of_type(ex.events(), EventType::OrderDone);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].order_id, 1u);
  EXPECT_EQ(done[0].reason, Reason::KillSwitch);
  EXPECT_EQ(done[0].qty, 0);  // nothing had filled
  // The cancelled order never fills, even once it would have arrived.
  const Nanos ts = kOpen + 2 * kHour;
  (void)ex.on_prediction(pred_at(0, ts, ts + 1, 0.6, 100.0));
  EXPECT_EQ(ex.position(0), 0);
  EXPECT_EQ(count_of(ex.events(), EventType::Fill), 0u);
}

TEST_F(KillSwitch, HaltThenInvalidInput_RejectedAndEngagedAtNextAcceptedPrediction) {
  // Engaging is part of the decision on accepted market data (the reference model's rule): an invalid
  // input is rejected for its own reason, sends nothing, and the halt is still pending.
  ex.halt();
  const Decision bad = ex.on_prediction(pred(0, 1, std::nan(""), 100.0));
  EXPECT_EQ(bad.reason, Reason::InvalidProbability);
  EXPECT_TRUE(ex.halted());
  EXPECT_EQ(count_of(ex.events(), EventType::OrderSent), 0u);
  const Decision next = ex.on_prediction(pred(0, 1, 0.9, 100.0));
  EXPECT_EQ(next.reason, Reason::KillSwitch);
  EXPECT_EQ(ex.halt_reason(), Reason::KillSwitch);
  EXPECT_EQ(ex.open_orders(0), 0u);
  EXPECT_EQ(paper(ex).working(0), 0u);
  EXPECT_EQ(count_of(ex.events(), EventType::Halt), 1u);
}

TEST_F(KillSwitch, Halted_RejectsEverythingUntilResume) {
  ex.halt();
  for (int bar = 1; bar <= 5; ++bar) {
    const Decision d = ex.on_prediction(pred(bar % 2, bar, bar % 2 ? 0.9 : 0.1, 100.0));
    EXPECT_EQ(d.action, Action::Reject) << bar;
    EXPECT_EQ(d.reason, Reason::KillSwitch) << bar;
  }
  EXPECT_EQ(count_of(ex.events(), EventType::OrderSent), 0u);
  EXPECT_EQ(count_of(ex.events(), EventType::Halt), 1u);  // engaged once
  EXPECT_EQ(ex.counters().by_reason[static_cast<std::size_t>(Reason::KillSwitch)], 5u);

  ex.resume(kOpen + 6 * kMinute);
  EXPECT_FALSE(ex.halted());
  const auto resumes = of_type(ex.events(), EventType::Resume);
  ASSERT_EQ(resumes.size(), 1u);
  EXPECT_EQ(resumes[0].reason, Reason::KillSwitch);
  const Decision d = ex.on_prediction(pred(0, 7, 0.9, 100.0));
  EXPECT_EQ(d.action, Action::Order);
  EXPECT_EQ(d.qty, 50);
}

TEST_F(KillSwitch, ResumeBeforeNextDecision_CancelsTheRequest) {
  ex.halt();
  ex.resume(kOpen + kMinute);
  EXPECT_FALSE(ex.halted());
  EXPECT_EQ(ex.events().size(), 0u);  // nothing was engaged, nothing to resume
  EXPECT_NE(ex.on_prediction(pred(1, 1, 0.9, 100.0)).action, Action::Reject);
  EXPECT_EQ(ex.open_orders(0), 1u);
}

TEST_F(KillSwitch, HaltFromAnotherThread_SeenByDecisionThread) {
  std::thread operator_thread([this] { ex.halt(); });
  operator_thread.join();
  EXPECT_EQ(ex.on_prediction(pred(1, 1, 0.9, 100.0)).reason, Reason::KillSwitch);
  EXPECT_EQ(ex.open_orders(0), 0u);
}

}  // namespace
