// Executor: input validation, decisions, accounting in integer units, gateways, and journal recovery.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "helpers.hpp"

namespace {

using namespace hft_exec;
using namespace hft_exec_test;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---- Input validation ---------------------------------------------------------------------------------------

struct BadInput {
  std::string name;
  Prediction p;
  Reason expected;
};

std::vector<BadInput> bad_inputs() {
  const Prediction ok = pred(0, 0, 0.6, 100.0, 0.01);
  auto with = [&](auto edit) {
    Prediction p = ok;
    edit(p);
    return p;
  };
  return {
      {"price NaN", with([](Prediction& p) { p.price = kNaN; }), Reason::InvalidPrice},
      {"price +inf", with([](Prediction& p) { p.price = kInf; }), Reason::InvalidPrice},
      {"price -inf", with([](Prediction& p) { p.price = -kInf; }), Reason::InvalidPrice},
      {"price zero", with([](Prediction& p) { p.price = 0.0; }), Reason::InvalidPrice},
      {"price negative", with([](Prediction& p) { p.price = -100.0; }), Reason::InvalidPrice},
      {"price too large", with([](Prediction& p) { p.price = 1e8; }), Reason::InvalidPrice},
      {"price below a tick", with([](Prediction& p) { p.price = 1e-5; }), Reason::InvalidPrice},
      {"probability NaN", with([](Prediction& p) { p.probability = kNaN; }), Reason::InvalidProbability},
      {"probability below 0", with([](Prediction& p) { p.probability = -0.01; }), Reason::InvalidProbability},
      {"probability above 1", with([](Prediction& p) { p.probability = 1.01; }), Reason::InvalidProbability},
      {"probability +inf", with([](Prediction& p) { p.probability = kInf; }), Reason::InvalidProbability},
      {"probability -inf", with([](Prediction& p) { p.probability = -kInf; }), Reason::InvalidProbability},
      {"volatility NaN", with([](Prediction& p) { p.volatility = kNaN; }), Reason::InvalidVolatility},
      {"volatility negative", with([](Prediction& p) { p.volatility = -0.01; }), Reason::InvalidVolatility},
      {"volatility +inf", with([](Prediction& p) { p.volatility = kInf; }), Reason::InvalidVolatility},
      {"unknown instrument", with([](Prediction& p) { p.instrument = 2; }), Reason::UnknownInstrument},
      {"instrument max", with([](Prediction& p) { p.instrument = UINT32_MAX; }), Reason::UnknownInstrument},
      {"NaN everywhere: probability first", with([](Prediction& p) { p.probability = p.price = p.volatility = kNaN; }),
       Reason::InvalidProbability},
  };
}

TEST(ExecutorInput, EachInvalidField_RejectedWithItsReasonAndNoOrder) {
  for (const BadInput& c : bad_inputs()) {
    SCOPED_TRACE(c.name);
    Executor ex(test_config(), 2);
    const Decision d = ex.on_prediction(c.p);
    EXPECT_EQ(d.action, Action::Reject);
    EXPECT_EQ(d.reason, c.expected);
    EXPECT_EQ(d.order_id, 0u);
    EXPECT_EQ(d.qty, 0);
    EXPECT_EQ(d.price, 0);
    EXPECT_EQ(d.ts_ns, c.p.ts_ns);
    ASSERT_EQ(ex.events().size(), 1u);
    const Event& e = ex.events()[0];
    EXPECT_EQ(e.type, EventType::PredictionSeen);
    EXPECT_EQ(e.reason, c.expected);
    EXPECT_EQ(e.price, 0);  // its market data was not accepted
    EXPECT_EQ(e.bar_ts_ns, c.p.ts_ns);
    EXPECT_EQ(ex.last_price(0), 0);
    EXPECT_EQ(ex.next_order_id(), 1u);
    EXPECT_EQ(ex.counters().rejections, 1u);
    EXPECT_EQ(ex.counters().by_reason[static_cast<std::size_t>(c.expected)], 1u);
  }
}

TEST(ExecutorInput, BoundaryValues_Accepted) {
  Executor ex(test_config(), 1);
  EXPECT_EQ(ex.on_prediction(pred(0, 0, 0.0, 100.0)).action, Action::Order);  // p = 0: short
  EXPECT_NE(ex.on_prediction(pred(0, 1, 1.0, 100.0)).action, Action::Reject);
  EXPECT_NE(ex.on_prediction(pred(0, 2, 0.5, 100.0, 0.0)).action, Action::Reject);  // volatility 0
  Executor big(test_config(), 1);
  EXPECT_NE(big.on_prediction(pred(0, 0, 0.5, 1e7)).action, Action::Reject);  // the largest price
  EXPECT_EQ(big.last_price(0), ticks(1e7));
}

TEST(ExecutorInput, InvalidPrediction_DoesNotConsumeItsBarTime) {
  Executor ex(test_config(), 1);
  ASSERT_EQ(ex.on_prediction(pred(0, 0, kNaN, 100.0)).reason, Reason::InvalidProbability);
  ASSERT_EQ(ex.on_prediction(pred(0, 0, 0.6, -1.0)).reason, Reason::InvalidPrice);
  const Decision d = ex.on_prediction(pred(0, 0, 0.6, 100.0));  // the corrected prediction for that bar
  EXPECT_EQ(d.action, Action::Order);
}

TEST(ExecutorInput, SameBarTwice_DuplicateRejectedNoOrder) {
  Executor ex(test_config(), 1);
  ASSERT_EQ(ex.on_prediction(pred(0, 1, 0.5, 100.0)).action, Action::Hold);
  const Decision d = ex.on_prediction(pred(0, 1, 0.9, 101.0));  // same bar, would buy
  EXPECT_EQ(d.action, Action::Reject);
  EXPECT_EQ(d.reason, Reason::DuplicatePrediction);
  EXPECT_EQ(ex.last_price(0), ticks(100.0));  // its price was not taken
  EXPECT_EQ(ex.signal(0), 0);
  EXPECT_EQ(count_of(ex.events(), EventType::OrderSent), 0u);
}

TEST(ExecutorInput, EarlierBar_OutOfOrderRejectedAsDuplicate) {
  Executor ex(test_config(), 1);
  ASSERT_EQ(ex.on_prediction(pred(0, 5, 0.5, 100.0)).action, Action::Hold);
  EXPECT_EQ(ex.on_prediction(pred(0, 4, 0.9, 100.0)).reason, Reason::DuplicatePrediction);
  EXPECT_EQ(ex.on_prediction(pred(0, -100, 0.9, 100.0)).reason, Reason::DuplicatePrediction);
  EXPECT_EQ(ex.on_prediction(pred(0, 6, 0.9, 100.0)).action, Action::Order);
}

TEST(ExecutorInput, BarTimes_TrackedPerInstrument) {
  Executor ex(test_config(), 2);
  ASSERT_EQ(ex.on_prediction(pred(0, 5, 0.5, 100.0)).action, Action::Hold);
  EXPECT_EQ(ex.on_prediction(pred(1, 1, 0.5, 100.0)).action, Action::Hold);
}

TEST(ExecutorInput, InstrumentsAboveConfiguredMaximum_Unknown) {
  ExecutorConfig c = test_config();
  c.max_instruments = 2;
  Executor ex(c, 5);
  EXPECT_EQ(ex.instruments(), 2u);
  EXPECT_EQ(ex.on_prediction(pred(2, 0, 0.6, 100.0)).reason, Reason::UnknownInstrument);
}

// ---- Decisions ----------------------------------------------------------------------------------------------

TEST(ExecutorDecision, EnterLong_OrderDecisionAndEventsDescribeTheOrder) {
  Executor ex(test_config(), 1);
  const Prediction p = pred(0, 0, 0.6, 100.0);
  const Decision d = ex.on_prediction(p);
  EXPECT_EQ(d.action, Action::Order);
  EXPECT_EQ(d.reason, Reason::None);
  EXPECT_EQ(d.order_id, 1u);
  EXPECT_EQ(d.qty, 50);           // 50 / (100 x 0.01)
  EXPECT_EQ(d.price, 1'005'000);  // 100.00 + 50 bps
  EXPECT_EQ(d.target, 50);
  EXPECT_EQ(d.ts_ns, p.ts_ns);
  EXPECT_EQ(d.instrument, 0u);
  ASSERT_EQ(ex.events().size(), 2u);
  const Event& seen = ex.events()[0];
  EXPECT_EQ(seen.type, EventType::PredictionSeen);
  EXPECT_EQ(seen.price, ticks(100.0));
  EXPECT_EQ(seen.qty, 1);  // the new signal
  EXPECT_EQ(seen.bar_ts_ns, p.ts_ns);
  EXPECT_EQ(seen.ts_ns, p.recv_ns);
  const Event& sent = ex.events()[1];
  EXPECT_EQ(sent.type, EventType::OrderSent);
  EXPECT_EQ(sent.order_id, 1u);
  EXPECT_EQ(sent.qty, 50);
  EXPECT_EQ(sent.price, 1'005'000);
  EXPECT_EQ(sent.ts_ns, p.recv_ns);
  EXPECT_EQ(ex.working(0), 50);
  EXPECT_EQ(ex.position(0), 0);  // not before the latency has passed
  EXPECT_EQ(ex.open_orders(0), 1u);
  EXPECT_EQ(ex.next_order_id(), 2u);
  EXPECT_EQ(ex.counters().orders, 1u);
}

TEST(ExecutorDecision, EnterShort_SellOrderBelowPrice) {
  Executor ex(test_config(), 1);
  const Decision d = ex.on_prediction(pred(0, 0, 0.4, 100.0));
  EXPECT_EQ(d.action, Action::Order);
  EXPECT_EQ(d.qty, -50);
  EXPECT_EQ(d.price, 995'000);
  EXPECT_EQ(d.target, -50);
  EXPECT_EQ(ex.signal(0), -1);
}

TEST(ExecutorDecision, NeutralProbability_HoldWithFlatTarget) {
  Executor ex(test_config(), 1);
  const Decision d = ex.on_prediction(pred(0, 0, 0.5, 100.0));
  EXPECT_EQ(d.action, Action::Hold);
  EXPECT_EQ(d.reason, Reason::None);
  EXPECT_EQ(d.target, 0);
  EXPECT_EQ(d.order_id, 0u);
  ASSERT_EQ(ex.events().size(), 1u);
  EXPECT_EQ(ex.events()[0].type, EventType::PredictionSeen);
  EXPECT_EQ(ex.counters().rejections, 0u);
}

TEST(ExecutorDecision, WorkingOrderCountsTowardTarget_NoDuplicateOrder) {
  ExecutorConfig c = test_config();
  c.exchange.latency_ns = kHour;
  Executor ex(c, 1);
  ASSERT_EQ(ex.on_prediction(pred(0, 0, 0.6, 100.0)).action, Action::Order);
  EXPECT_EQ(ex.on_prediction(pred(0, 1, 0.6, 100.0)).action, Action::Hold);
  EXPECT_EQ(ex.open_orders(0), 1u);
}

TEST(ExecutorDecision, SmallSizeChange_NoRebalanceLargeOneTrades) {
  Executor ex(test_config(), 1);
  ASSERT_EQ(ex.on_prediction(pred(0, 0, 0.6, 100.0)).action, Action::Order);
  ASSERT_EQ(ex.on_prediction(pred(0, 1, 0.6, 100.0)).action, Action::Hold);  // filled
  ASSERT_EQ(ex.position(0), 50);
  const Decision small = ex.on_prediction(pred(0, 2, 0.6, 100.0, 0.0095));  // target 52
  EXPECT_EQ(small.action, Action::Hold);
  EXPECT_EQ(small.target, 52);
  const Decision big = ex.on_prediction(pred(0, 3, 0.6, 100.0, 0.005));  // target 100
  EXPECT_EQ(big.action, Action::Order);
  EXPECT_EQ(big.qty, 50);
}

TEST(ExecutorDecision, ExitLong_SellsWholePosition) {
  Executor ex(test_config(), 1);
  ASSERT_EQ(ex.on_prediction(pred(0, 0, 0.6, 100.0)).action, Action::Order);
  ASSERT_EQ(ex.on_prediction(pred(0, 1, 0.53, 100.0)).action, Action::Hold);  // hysteresis: stay long
  const Decision d = ex.on_prediction(pred(0, 2, 0.51, 100.0));
  EXPECT_EQ(d.action, Action::Order);
  EXPECT_EQ(d.qty, -50);
  EXPECT_EQ(d.order_id, 2u);
  EXPECT_EQ(d.target, 0);
}

TEST(ExecutorDecision, Batch_SameAsOneByOne) {
  std::vector<Prediction> in;
  for (int bar = 0; bar < 20; ++bar) in.push_back(pred(bar % 2, bar, bar % 3 == 0 ? 0.6 : 0.4, 100.0 + bar * 0.1));
  in.push_back(pred(0, 1, 0.6, 100.0));  // a duplicate among them
  Executor one(test_config(), 2), batch(test_config(), 2);
  std::vector<Decision> expected;
  for (const Prediction& p : in) expected.push_back(one.on_prediction(p));
  std::vector<Decision> out(in.size());
  batch.on_predictions(in, out);
  for (std::size_t k = 0; k < in.size(); ++k) {
    EXPECT_EQ(out[k].action, expected[k].action) << k;
    EXPECT_EQ(out[k].order_id, expected[k].order_id) << k;
    EXPECT_EQ(out[k].qty, expected[k].qty) << k;
    EXPECT_EQ(out[k].reason, expected[k].reason) << k;
  }
  EXPECT_EQ(batch.cash(), one.cash());
  EXPECT_EQ(batch.position(0), one.position(0));
}

TEST(ExecutorOutbox, Undrained_GrowsAndKeepsEveryEventInOrder) {
  Executor ex(test_config(), 1);
  const std::size_t decisions = 70'000;  // PredictionSeen events alone outgrow the initial 65,536 slots
  for (std::size_t bar = 0; bar < decisions; ++bar) (void)ex.on_prediction(pred(0, static_cast<int>(bar), 0.5, 100.0));
  const auto events = ex.events();
  std::size_t seen = 0;
  Nanos last = INT64_MIN;
  for (const Event& e : events) {
    if (e.type != EventType::PredictionSeen) continue;
    EXPECT_GT(e.bar_ts_ns, last);
    last = e.bar_ts_ns;
    ++seen;
  }
  EXPECT_EQ(seen, decisions);
  ex.clear_events();
  EXPECT_TRUE(ex.events().empty());
}

// ---- Accounting ---------------------------------------------------------------------------------------------

TEST(ExecutorAccounting, BuyFillThenSellFill_CashPositionFeesEquityGross) {
  Executor ex(test_config(), 1);  // 1 bp slippage, 0.5 bp fee, 100 us latency
  ASSERT_EQ(ex.on_prediction(pred(0, 0, 0.6, 100.0)).action, Action::Order);
  EXPECT_EQ(ex.cash(), 0);
  EXPECT_EQ(ex.gross(), 50 * 1'000'000);  // working orders count

  ASSERT_EQ(ex.on_prediction(pred(0, 1, 0.6, 100.0)).action, Action::Hold);
  const Money buy_fee = 2'500;  // 50 x 1'000'100 x 0.5 bp = 2500.25
  EXPECT_EQ(ex.position(0), 50);
  EXPECT_EQ(ex.working(0), 0);
  EXPECT_EQ(ex.open_orders(0), 0u);
  EXPECT_EQ(ex.fees(), buy_fee);
  EXPECT_EQ(ex.cash(), -(50 * 1'000'100 + buy_fee));
  EXPECT_EQ(ex.equity(), ex.cash() + 50 * 1'000'000);
  EXPECT_EQ(ex.equity(), -(50 * 100 + buy_fee));  // slippage and fee so far
  EXPECT_EQ(ex.gross(), 50 * 1'000'000);
  const auto fills = of_type(ex.events(), EventType::Fill);
  ASSERT_EQ(fills.size(), 1u);
  EXPECT_EQ(fills[0].qty, 50);
  EXPECT_EQ(fills[0].price, 1'000'100);
  EXPECT_EQ(fills[0].fee, buy_fee);
  const auto done = of_type(ex.events(), EventType::OrderDone);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].qty, 50);
  EXPECT_EQ(done[0].reason, Reason::None);

  ASSERT_EQ(ex.on_prediction(pred(0, 2, 0.6, 102.0)).action, Action::Hold);  // marks up
  EXPECT_EQ(ex.equity(), -(50 * 1'000'100 + buy_fee) + 50 * 1'020'000);
  EXPECT_EQ(ex.gross(), 50 * 1'020'000);

  const Decision sell = ex.on_prediction(pred(0, 3, 0.5, 102.0));
  ASSERT_EQ(sell.action, Action::Order);
  ASSERT_EQ(sell.price, 1'014'900);
  ASSERT_EQ(ex.on_prediction(pred(0, 4, 0.5, 102.0)).action, Action::Hold);  // fills at 102 - 1 bp
  const Money sell_fee = 2'550;                                              // 50 x 1'019'898 x 0.5 bp = 2549.745
  EXPECT_EQ(ex.position(0), 0);
  EXPECT_EQ(ex.fees(), buy_fee + sell_fee);
  EXPECT_EQ(ex.cash(), -(50 * 1'000'100 + buy_fee) + 50 * 1'019'898 - sell_fee);
  EXPECT_EQ(ex.equity(), ex.cash());
  EXPECT_EQ(ex.gross(), 0);
  EXPECT_EQ(ex.counters().fills, 2u);
}

TEST(ExecutorAccounting, SellLimitNotMarketable_RestsAndPositionUnchanged) {
  Executor ex(test_config(), 1);
  ASSERT_EQ(ex.on_prediction(pred(0, 0, 0.6, 100.0)).action, Action::Order);
  ASSERT_EQ(ex.on_prediction(pred(0, 1, 0.6, 100.0)).action, Action::Hold);
  ASSERT_EQ(ex.on_prediction(pred(0, 2, 0.5, 100.0)).qty, -50);             // limit 99.50
  EXPECT_EQ(ex.on_prediction(pred(0, 3, 0.5, 99.0)).action, Action::Hold);  // 98.99 < 99.50
  EXPECT_EQ(ex.position(0), 50);
  EXPECT_EQ(ex.working(0), -50);
  EXPECT_EQ(ex.open_orders(0), 1u);
  EXPECT_EQ(ex.on_prediction(pred(0, 4, 0.5, 99.6)).action, Action::Hold);  // 99.59 >= 99.50
  EXPECT_EQ(ex.position(0), 0);
  EXPECT_EQ(ex.open_orders(0), 0u);
}

TEST(ExecutorAccounting, PartialFills_SameTotalsAsOneFill) {
  ExecutorConfig c = test_config();
  c.exchange.max_fill_qty = 20;
  Executor ex(c, 1);
  ASSERT_EQ(ex.on_prediction(pred(0, 0, 0.6, 100.0)).action, Action::Order);
  ASSERT_EQ(ex.on_prediction(pred(0, 1, 0.6, 100.0)).action, Action::Hold);
  EXPECT_EQ(ex.position(0), 20);
  EXPECT_EQ(ex.working(0), 30);
  EXPECT_EQ(ex.open_orders(0), 1u);
  EXPECT_EQ(ex.gross(), 50 * 1'000'000);  // position + working
  ASSERT_EQ(ex.on_prediction(pred(0, 2, 0.6, 100.0)).action, Action::Hold);
  EXPECT_EQ(ex.position(0), 40);
  ASSERT_EQ(ex.on_prediction(pred(0, 3, 0.6, 100.0)).action, Action::Hold);
  EXPECT_EQ(ex.position(0), 50);
  EXPECT_EQ(ex.working(0), 0);
  EXPECT_EQ(ex.open_orders(0), 0u);
  const Money fees = 1'000 + 1'000 + 500;  // 20 x 1'000'100 x 0.5 bp = 1000.04, 10 x ... = 500.02
  EXPECT_EQ(ex.fees(), fees);
  EXPECT_EQ(ex.cash(), -(50 * 1'000'100 + fees));
  EXPECT_EQ(count_of(ex.events(), EventType::Fill), 3u);
  EXPECT_EQ(count_of(ex.events(), EventType::OrderDone), 1u);
}

TEST(ExecutorAccounting, FillForUnknownOrderOrTooLarge_Ignored) {
  ExecutorConfig c = test_config();
  c.exchange.latency_ns = kHour;
  Executor ex(c, 1);
  ASSERT_EQ(ex.on_prediction(pred(0, 0, 0.6, 100.0)).action, Action::Order);
  ex.clear_events();
  ex.on_fill(FillReport{99, 0, 10, 1'000'000, 5, kOpen});  // not ours
  ex.on_fill(FillReport{1, 0, 51, 1'000'000, 5, kOpen});   // more than the order
  ex.on_fill(FillReport{1, 0, 0, 1'000'000, 5, kOpen});    // nothing
  ex.on_fill(FillReport{1, 3, 10, 1'000'000, 5, kOpen});   // instrument out of range
  EXPECT_EQ(ex.position(0), 0);
  EXPECT_EQ(ex.cash(), 0);
  EXPECT_EQ(ex.fees(), 0);
  EXPECT_EQ(ex.working(0), 50);
  EXPECT_TRUE(ex.events().empty());
  ex.on_fill(FillReport{1, 0, 10, 1'000'000, 5, kOpen});
  EXPECT_EQ(ex.position(0), 10);
  EXPECT_EQ(ex.working(0), 40);
  EXPECT_EQ(ex.cash(), -(10 * 1'000'000 + 5));
}

// A deterministic random walk over three instruments with partial fills, rests, flips and a halt.
std::vector<Prediction> random_walk(int steps, unsigned seed, int first_bar = 0) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> prob(0.3, 0.7), move(-0.006, 0.006), vol(0.004, 0.02);
  double price[3] = {100.0, 42.5, 250.0};
  std::vector<Prediction> out;
  for (int k = 0; k < steps; ++k) {
    const auto i = static_cast<InstrumentId>(k % 3);
    price[i] *= 1.0 + move(rng);
    out.push_back(pred(i, first_bar + k / 3, prob(rng), std::round(price[i] * 100.0) / 100.0, vol(rng)));
  }
  return out;
}

ExecutorConfig walk_config() {
  ExecutorConfig c = test_config();
  c.exchange.max_fill_qty = 15;
  c.exchange.fee_per_share = 0.003;
  c.risk.daily_loss_limit = 1e9;
  return c;
}

TEST(ExecutorAccounting, RandomWalk_IntegerBooksAgreeWithTheJournalAfterEveryStep) {
  Executor ex(walk_config(), 3);
  const std::vector<Prediction> walk = random_walk(600, 7);
  Money cash = 0, fees = 0;
  Qty position[3] = {0, 0, 0};
  std::map<OrderId, std::pair<InstrumentId, Qty>> open;  // id -> instrument, signed remaining
  for (std::size_t k = 0; k < walk.size(); ++k) {
    if (k == 300) ex.halt();
    if (k == 330) ex.resume(walk[k].recv_ns - 1);
    (void)ex.on_prediction(walk[k]);
    for (const Event& e : ex.events()) {
      switch (e.type) {
        case EventType::OrderSent: open[e.order_id] = {e.instrument, e.qty}; break;
        case EventType::Fill:
          cash -= e.qty * e.price + e.fee;
          fees += e.fee;
          position[e.instrument] += e.qty;
          open[e.order_id].second -= e.qty;
          break;
        case EventType::OrderDone: open.erase(e.order_id); break;
        default: break;
      }
    }
    ex.clear_events();
    SCOPED_TRACE("step " + std::to_string(k));
    ASSERT_EQ(ex.cash(), cash);
    ASSERT_EQ(ex.fees(), fees);
    Money marked = 0, gross = 0;
    for (InstrumentId i = 0; i < 3; ++i) {
      Qty working = 0;
      std::uint32_t n = 0;
      for (const auto& [id, o] : open)
        if (o.first == i) working += o.second, ++n;
      ASSERT_EQ(ex.position(i), position[i]);
      ASSERT_EQ(ex.working(i), working);
      ASSERT_EQ(ex.open_orders(i), n);
      ASSERT_LE(std::abs(position[i] + working), ex.config().risk.max_position);
      marked += position[i] * ex.last_price(i);
      gross += std::abs(position[i] + working) * ex.last_price(i);
    }
    ASSERT_EQ(ex.equity(), cash + marked);
    ASSERT_EQ(ex.gross(), gross);
  }
  EXPECT_GT(ex.counters().fills, 50u);  // the walk did trade
  EXPECT_GT(ex.counters().orders, 20u);
}

// ---- Gateways -----------------------------------------------------------------------------------------------

struct FakeGateway final : ExchangeGateway {
  bool accept = true;
  std::vector<Order> sent;
  std::vector<OrderId> cancelled;
  bool send(const Order& order, Nanos) noexcept override {
    sent.push_back(order);
    return accept;
  }
  bool cancel(OrderId id, InstrumentId, Nanos) noexcept override {
    cancelled.push_back(id);
    return true;
  }
  void on_market(InstrumentId, Price, Nanos, FillListener&) noexcept override {}
};

TEST(ExecutorGateway, ExternalGateway_ReceivesTheOrderAndTheCancels) {
  FakeGateway gw;
  Executor ex(test_config(), 1, &gw);
  ASSERT_EQ(ex.on_prediction(pred(0, 0, 0.4, 100.0)).action, Action::Order);
  ASSERT_EQ(gw.sent.size(), 1u);
  EXPECT_EQ(gw.sent[0].id, 1u);
  EXPECT_EQ(gw.sent[0].side, Side::Sell);
  EXPECT_EQ(gw.sent[0].qty, 50);
  EXPECT_EQ(gw.sent[0].limit, 995'000);
  EXPECT_EQ(gw.sent[0].state, OrderState::Sent);
  ex.on_fill(FillReport{1, 0, 20, 999'900, 10, kOpen + kMinute});  // the venue reports
  EXPECT_EQ(ex.position(0), -20);
  EXPECT_EQ(ex.working(0), -30);
  ex.halt();
  (void)ex.on_prediction(pred(0, 1, 0.4, 100.0));
  ASSERT_EQ(gw.cancelled.size(), 1u);
  EXPECT_EQ(gw.cancelled[0], 1u);
  EXPECT_EQ(ex.working(0), 0);
  const auto done = of_type(ex.events(), EventType::OrderDone);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].qty, -20);  // what had filled
}

TEST(ExecutorGateway, VenueRefusesSend_OrderClosedNothingWorking) {
  FakeGateway gw;
  gw.accept = false;
  Executor ex(test_config(), 1, &gw);
  const Decision d = ex.on_prediction(pred(0, 0, 0.6, 100.0));
  EXPECT_EQ(d.action, Action::Reject);
  EXPECT_EQ(d.reason, Reason::VenueRejected);
  EXPECT_EQ(d.order_id, 0u);
  EXPECT_EQ(ex.counters().orders, 0u);
  EXPECT_EQ(ex.working(0), 0);
  EXPECT_EQ(ex.open_orders(0), 0u);
  EXPECT_EQ(ex.gross(), 0);
  const auto done = of_type(ex.events(), EventType::OrderDone);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].order_id, 1u);
  // The next bar tries again with a new id.
  EXPECT_EQ(ex.next_order_id(), 2u);
  EXPECT_EQ(ex.on_prediction(pred(0, 1, 0.6, 100.0)).reason, Reason::VenueRejected);
  EXPECT_EQ(ex.next_order_id(), 3u);  // a refused id is never reused
}

// ---- Journal recovery ---------------------------------------------------------------------------------------

// Feeds predictions and journals every event, draining the outbox after each call as a service would.
struct Journaled {
  explicit Journaled(const ExecutorConfig& c, std::uint32_t n = 3) : ex(c, n) {}
  Decision feed(const Prediction& p) {
    fed.push_back(p);
    const Decision d = ex.on_prediction(p);
    decisions.push_back(d);
    drain();
    return d;
  }
  void drain() {
    journal.insert(journal.end(), ex.events().begin(), ex.events().end());
    ex.clear_events();
  }
  Executor ex;
  std::vector<Prediction> fed;
  std::vector<Decision> decisions;
  std::vector<Event> journal;
};

ExecutorConfig scenario_config() {
  ExecutorConfig c = test_config();
  c.exchange.max_fill_qty = 20;
  c.risk.daily_loss_limit = 1e9;
  return c;
}

// Partial fills, rests, an invalid input, a bad tick, a stale prediction, a kill switch with cancels and a
// resume, and working orders (some partly filled) left at the end.
void run_scenario(Journaled& j) {
  j.feed(pred(0, 0, 0.6, 100.0));  // buy 50
  j.feed(pred(1, 0, 0.4, 50.0));   // sell 100
  j.feed(pred(2, 0, 0.5, 20.0));   // hold
  j.feed(pred(0, 1, 0.6, 100.0));  // 20 of the buy
  j.feed(pred(1, 1, 0.4, 50.0));   // 20 of the sell
  j.feed(pred(2, 1, kNaN, 20.0));  // invalid
  j.feed(pred(0, 2, 0.6, 100.0));
  j.feed(pred(1, 2, 0.4, 60.0));        // bad tick
  j.feed(pred(2, 2, 0.6, 20.0, 0.02));  // buy 125
  j.feed(pred(0, 3, 0.6, 100.0));
  j.feed(pred(1, 3, 0.4, 50.0));
  j.feed(pred(2, 3, 0.6, 20.0, 0.02));
  j.ex.halt();
  j.feed(pred(0, 4, 0.6, 100.0));  // kill switch: cancels everything
  j.feed(pred(1, 4, 0.6, 50.0));
  j.ex.resume(kOpen + 5 * kMinute);
  j.drain();
  j.feed(pred(0, 5, 0.4, 100.0));  // flip short
  j.feed(pred(1, 5, 0.6, 50.0));   // flip long
  j.feed(pred(2, 5, 0.6, 20.0, 0.02));
  const Nanos stale_ts = kOpen + 6 * kMinute;
  j.feed(pred_at(2, stale_ts, stale_ts + 121 * kSecond, 0.6, 20.0));
  j.feed(pred(0, 6, 0.4, 100.0));
  j.feed(pred(1, 6, 0.6, 50.0));
  j.feed(pred(0, 7, 0.4, 99.0));  // the sell rests
  j.feed(pred(1, 7, 0.5, 50.0));  // exit long while the buy still works
}

void expect_same_state(const Executor& a, const Executor& b) {
  ASSERT_EQ(a.instruments(), b.instruments());
  for (InstrumentId i = 0; i < a.instruments(); ++i) {
    SCOPED_TRACE("instrument " + std::to_string(i));
    EXPECT_EQ(a.position(i), b.position(i));
    EXPECT_EQ(a.working(i), b.working(i));
    EXPECT_EQ(a.last_price(i), b.last_price(i));
    EXPECT_EQ(a.signal(i), b.signal(i));
    EXPECT_EQ(a.open_orders(i), b.open_orders(i));
  }
  EXPECT_EQ(a.cash(), b.cash());
  EXPECT_EQ(a.equity(), b.equity());
  EXPECT_EQ(a.day_pnl(), b.day_pnl());
  EXPECT_EQ(a.fees(), b.fees());
  EXPECT_EQ(a.gross(), b.gross());
  EXPECT_EQ(a.next_order_id(), b.next_order_id());
  EXPECT_EQ(a.halted(), b.halted());
  EXPECT_EQ(a.halt_reason(), b.halt_reason());
}

void expect_same_event(const Event& a, const Event& b, std::size_t k) {
  SCOPED_TRACE("event " + std::to_string(k));
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.ts_ns, b.ts_ns);
  EXPECT_EQ(a.order_id, b.order_id);
  EXPECT_EQ(a.price, b.price);
  EXPECT_EQ(a.qty, b.qty);
  EXPECT_EQ(a.fee, b.fee);
  EXPECT_EQ(a.bar_ts_ns, b.bar_ts_ns);
  EXPECT_EQ(a.instrument, b.instrument);
  EXPECT_EQ(a.reason, b.reason);
}

// Ids of the orders still open according to a journal, with their filled quantity (signed).
std::map<OrderId, Qty> open_in(std::span<const Event> journal) {
  std::map<OrderId, Qty> open;
  for (const Event& e : journal) {
    if (e.type == EventType::OrderSent) open[e.order_id] = 0;
    if (e.type == EventType::Fill) open[e.order_id] += e.qty;
    if (e.type == EventType::OrderDone) open.erase(e.order_id);
  }
  return open;
}

// Halts, feeds one valid prediction, and returns the ids (and filled quantities) of the cancelled orders.
std::map<OrderId, Qty> cancel_all(Executor& ex, const Prediction& p) {
  ex.clear_events();
  ex.halt();
  (void)ex.on_prediction(p);
  std::map<OrderId, Qty> out;
  for (const Event& e : of_type(ex.events(), EventType::OrderDone)) out[e.order_id] = e.qty;
  return out;
}

TEST(Recovery, ScenarioJournal_CoversTheCasesItClaims) {
  Journaled j(scenario_config());
  run_scenario(j);
  const auto& J = j.journal;
  EXPECT_GE(count_of(J, EventType::Fill), 6u);
  EXPECT_EQ(count_of(J, EventType::Halt), 1u);
  EXPECT_EQ(count_of(J, EventType::Resume), 1u);
  std::set<Reason> seen_rejects;
  for (const Event& e : of_type(J, EventType::PredictionSeen)) seen_rejects.insert(e.reason);
  EXPECT_TRUE(seen_rejects.count(Reason::InvalidProbability));
  EXPECT_TRUE(seen_rejects.count(Reason::PriceBand));
  EXPECT_TRUE(seen_rejects.count(Reason::StalePrediction));
  const auto open = open_in(J);
  EXPECT_GE(open.size(), 3u);
  bool partly_filled_open = false;
  for (const auto& [id, filled] : open) partly_filled_open |= filled != 0;
  EXPECT_TRUE(partly_filled_open);
  EXPECT_NE(j.ex.position(0), 0);
  EXPECT_NE(j.ex.position(2), 0);
}

TEST(Recovery, ReplayedJournal_StateIdentical) {
  Journaled j(scenario_config());
  run_scenario(j);
  Executor rec(scenario_config(), 3);
  rec.recover(j.journal);
  expect_same_state(j.ex, rec);
  EXPECT_TRUE(rec.events().empty());  // replay journals nothing again
  EXPECT_EQ(paper(rec).working(0) + paper(rec).working(1) + paper(rec).working(2),
            paper(j.ex).working(0) + paper(j.ex).working(1) + paper(j.ex).working(2));
}

TEST(Recovery, ReplayedJournal_SameOpenOrderIdsAndFills) {
  Journaled j(scenario_config());
  run_scenario(j);
  Executor rec(scenario_config(), 3);
  rec.recover(j.journal);
  const auto expected = open_in(j.journal);
  ASSERT_FALSE(expected.empty());
  const Prediction next = pred(0, 20, 0.5, 99.0);
  EXPECT_EQ(cancel_all(rec, next), expected);
  EXPECT_EQ(cancel_all(j.ex, next), expected);
}

TEST(Recovery, ContinuedAfterRecovery_SameDecisionsAndEventsAsWithoutCrash) {
  Journaled j(scenario_config());
  run_scenario(j);
  const OrderId first_new_id = j.ex.next_order_id();
  Executor rec(scenario_config(), 3);
  rec.recover(j.journal);
  j.ex.clear_events();
  std::vector<Prediction> more = random_walk(90, 11, /*first_bar=*/8);
  for (Prediction& p : more) {  // start the walk from the scenario's last prices
    const double base[3] = {99.0, 50.0, 20.0}, start[3] = {100.0, 42.5, 250.0};
    p.price = std::round(p.price / start[p.instrument] * base[p.instrument] * 100.0) / 100.0;
  }
  bool old_order_filled = false;
  for (std::size_t k = 0; k < more.size(); ++k) {
    SCOPED_TRACE("prediction " + std::to_string(k));
    const Decision a = j.ex.on_prediction(more[k]);
    const Decision b = rec.on_prediction(more[k]);
    EXPECT_EQ(a.action, b.action);
    EXPECT_EQ(a.reason, b.reason);
    EXPECT_EQ(a.order_id, b.order_id);
    EXPECT_EQ(a.qty, b.qty);
    EXPECT_EQ(a.price, b.price);
    EXPECT_EQ(a.target, b.target);
    ASSERT_EQ(j.ex.events().size(), rec.events().size());
    for (std::size_t e = 0; e < rec.events().size(); ++e) {
      expect_same_event(j.ex.events()[e], rec.events()[e], e);
      old_order_filled |= rec.events()[e].type == EventType::Fill && rec.events()[e].order_id < first_new_id;
    }
    j.ex.clear_events();
    rec.clear_events();
  }
  EXPECT_TRUE(old_order_filled);  // orders from before the crash kept working at the exchange
  expect_same_state(j.ex, rec);
}

TEST(Recovery, LastPredictionFedAgain_DuplicateAndNoOrderSent) {
  Journaled j(scenario_config());
  run_scenario(j);
  const Prediction last = j.fed.back();
  ASSERT_EQ(j.decisions.back().action, Action::Order) << "the scenario's last prediction sent an order";
  Executor rec(scenario_config(), 3);
  rec.recover(j.journal);
  const OrderId next_id = rec.next_order_id();
  const std::uint32_t working = paper(rec).working(last.instrument);
  const Decision d = rec.on_prediction(last);
  EXPECT_EQ(d.action, Action::Reject);
  EXPECT_EQ(d.reason, Reason::DuplicatePrediction);
  EXPECT_EQ(d.order_id, 0u);
  EXPECT_EQ(count_of(rec.events(), EventType::OrderSent), 0u);
  EXPECT_EQ(rec.next_order_id(), next_id);
  EXPECT_EQ(paper(rec).working(last.instrument), working);
  EXPECT_EQ(paper(rec).duplicate_sends(), 0u);
}

TEST(Recovery, WholeInputFedAgain_NothingTradedTwice) {
  Journaled j(scenario_config());
  run_scenario(j);
  Executor rec(scenario_config(), 3);
  rec.recover(j.journal);
  const Money cash = rec.cash();
  for (const Prediction& p : j.fed) {
    const Decision d = rec.on_prediction(p);
    EXPECT_EQ(d.action, Action::Reject);
    // The invalid one never consumed its bar time; every other was processed before the crash.
    EXPECT_EQ(d.reason, std::isnan(p.probability) ? Reason::InvalidProbability : Reason::DuplicatePrediction);
  }
  EXPECT_EQ(count_of(rec.events(), EventType::OrderSent), 0u);
  EXPECT_EQ(count_of(rec.events(), EventType::Fill), 0u);  // rejected input moves no market
  EXPECT_EQ(rec.cash(), cash);
}

TEST(Recovery, RandomWalkJournal_StateIdentical) {
  Journaled j(walk_config());
  const auto walk = random_walk(450, 3);
  for (std::size_t k = 0; k < walk.size(); ++k) {
    if (k == 200) j.ex.halt();
    if (k == 240) {
      j.ex.resume(walk[k].recv_ns - 1);
      j.drain();
    }
    j.feed(walk[k]);
  }
  ASSERT_GT(count_of(j.journal, EventType::Fill), 30u);
  Executor rec(walk_config(), 3);
  rec.recover(j.journal);
  expect_same_state(j.ex, rec);
  const Prediction next = pred(1, 1'000, 0.5, j.ex.last_price(1) / double(kTicksPerUnit));
  EXPECT_EQ(cancel_all(rec, next), cancel_all(j.ex, next));
}

TEST(Recovery, KillSwitchEngagedBeforeCrash_RecoveredHalted) {
  ExecutorConfig c = scenario_config();
  c.exchange.latency_ns = kHour;
  Journaled j(c);
  j.feed(pred(0, 0, 0.6, 100.0));
  j.ex.halt();
  j.feed(pred(1, 1, 0.6, 50.0));
  ASSERT_EQ(j.ex.halt_reason(), Reason::KillSwitch);
  Executor rec(c, 3);
  rec.recover(j.journal);
  expect_same_state(j.ex, rec);
  EXPECT_TRUE(rec.halted());
  EXPECT_EQ(rec.open_orders(0), 0u);
  EXPECT_EQ(paper(rec).working(0), 0u);  // the cancelled order is not restored
  EXPECT_EQ(rec.on_prediction(pred(0, 2, 0.6, 100.0)).reason, Reason::KillSwitch);
  rec.resume(kOpen + 3 * kMinute);
  EXPECT_FALSE(rec.halted());
  EXPECT_EQ(rec.on_prediction(pred(0, 4, 0.6, 100.0)).action, Action::Order);
}

TEST(Recovery, DailyLossHaltBeforeCrash_RecoveredHaltedThenLiftsNextDay) {
  ExecutorConfig c = test_config();
  c.risk.daily_loss_limit = 100.0;
  Journaled j(c, 1);
  j.feed(pred(0, 0, 0.6, 100.0));
  j.feed(pred(0, 1, 0.6, 100.0));
  ASSERT_EQ(j.feed(pred(0, 2, 0.6, 97.0)).reason, Reason::DailyLossLimit);
  Executor rec(c, 1);
  rec.recover(j.journal);
  expect_same_state(j.ex, rec);
  EXPECT_EQ(rec.halt_reason(), Reason::DailyLossLimit);
  EXPECT_EQ(rec.on_prediction(pred(0, 3, 0.6, 97.0)).reason, Reason::DailyLossLimit);
  const Nanos ts = kOpen + kDay;
  const Decision a = j.ex.on_prediction(pred_at(0, ts, ts + 1, 0.4, 97.0));
  const Decision b = rec.on_prediction(pred_at(0, ts, ts + 1, 0.4, 97.0));
  EXPECT_EQ(b.action, Action::Order);
  EXPECT_EQ(a.order_id, b.order_id);
  EXPECT_EQ(a.qty, b.qty);
  expect_same_state(j.ex, rec);
}

TEST(Recovery, DayBoundaryInJournal_DayPnlFromTheRightStart) {
  ExecutorConfig c = test_config();
  Journaled j(c, 1);
  j.feed(pred(0, 0, 0.6, 100.0));
  j.feed(pred(0, 1, 0.6, 100.0));
  j.feed(pred(0, 2, 0.6, 103.0));
  const Nanos ts = kOpen + kDay;
  j.feed(pred_at(0, ts, ts + 1, 0.6, 104.0));
  ASSERT_EQ(j.ex.day_pnl(), 50 * (ticks(104.0) - ticks(103.0)));
  Executor rec(c, 1);
  rec.recover(j.journal);
  EXPECT_EQ(rec.day_pnl(), j.ex.day_pnl());
  EXPECT_EQ(rec.equity(), j.ex.equity());
}

TEST(Recovery, EmptyJournal_FreshExecutor) {
  Executor rec(test_config(), 2);
  rec.recover({});
  Executor fresh(test_config(), 2);
  expect_same_state(fresh, rec);
  EXPECT_EQ(rec.on_prediction(pred(0, 0, 0.6, 100.0)).order_id, 1u);
}

TEST(Recovery, RecoveredExchange_RefusesReSendOfJournaledIds) {
  Journaled j(scenario_config());
  run_scenario(j);
  j.ex.halt();  // every order closed: the recovered exchange restores none and must still know the ids
  j.feed(pred(0, 8, 0.5, 99.0));
  ASSERT_TRUE(open_in(j.journal).empty());
  Executor rec(scenario_config(), 3);
  rec.recover(j.journal);
  const OrderId last_sent = rec.next_order_id() - 1;
  ASSERT_GE(last_sent, 7u);
  PaperExchange venue = paper(rec);  // a copy: probe it without touching the executor
  Order again{1, 2, Side::Buy, 1, 0, 200'000, kOpen, OrderState::Sent};
  EXPECT_FALSE(venue.send(again, kOpen));
  again.id = last_sent;
  EXPECT_FALSE(venue.send(again, kOpen));
  EXPECT_EQ(venue.duplicate_sends(), 2u);
  again.id = last_sent + 1;
  EXPECT_TRUE(venue.send(again, kOpen));
}

}  // namespace
