// Strategy: probability thresholds with hysteresis, volatility sizing, rebalance threshold, limit collar.
#include <gtest/gtest.h>

#include <limits>

#include "helpers.hpp"
#include "hft_exec/strategy.hpp"

namespace {

using namespace hft_exec;

const StrategyConfig kCfg = hft_exec_test::strategy_config();  // risk_per_trade 50; enter_long 0.55, exit_long 0.52,
                                                               // enter_short 0.45, exit_short 0.48

// ---- next_signal --------------------------------------------------------------------------------------------

TEST(NextSignal, FlatAtEnterLongThreshold_GoesLong) {
  EXPECT_EQ(next_signal(0, 0.55, kCfg), 1);
  EXPECT_EQ(next_signal(0, 1.0, kCfg), 1);
}

TEST(NextSignal, FlatBetweenEntryThresholds_StaysFlat) {
  EXPECT_EQ(next_signal(0, 0.5499, kCfg), 0);
  EXPECT_EQ(next_signal(0, 0.5, kCfg), 0);
  EXPECT_EQ(next_signal(0, 0.4501, kCfg), 0);
}

TEST(NextSignal, FlatAtEnterShortThreshold_GoesShort) {
  EXPECT_EQ(next_signal(0, 0.45, kCfg), -1);
  EXPECT_EQ(next_signal(0, 0.0, kCfg), -1);
}

TEST(NextSignal, LongBetweenExitAndEntry_StaysLong) {
  EXPECT_EQ(next_signal(1, 0.54, kCfg), 1);
  EXPECT_EQ(next_signal(1, 0.52, kCfg), 1);  // exit needs p < exit_long
}

TEST(NextSignal, LongBelowExitLong_GoesFlat) {
  EXPECT_EQ(next_signal(1, 0.5199, kCfg), 0);
  EXPECT_EQ(next_signal(1, 0.46, kCfg), 0);
}

TEST(NextSignal, LongAtEnterShort_FlipsShort) { EXPECT_EQ(next_signal(1, 0.45, kCfg), -1); }

TEST(NextSignal, ShortBetweenEntryAndExit_StaysShort) {
  EXPECT_EQ(next_signal(-1, 0.46, kCfg), -1);
  EXPECT_EQ(next_signal(-1, 0.48, kCfg), -1);  // exit needs p > exit_short
}

TEST(NextSignal, ShortAboveExitShort_GoesFlat) {
  EXPECT_EQ(next_signal(-1, 0.4801, kCfg), 0);
  EXPECT_EQ(next_signal(-1, 0.54, kCfg), 0);
}

TEST(NextSignal, ShortAtEnterLong_FlipsLong) { EXPECT_EQ(next_signal(-1, 0.55, kCfg), 1); }

TEST(NextSignal, ProbabilityHoveringAroundEntry_DoesNotFlipEveryBar) {
  // Hysteresis: once long, dipping just below enter_long keeps the position; only p < exit_long leaves.
  std::int8_t s = 0;
  const double path[] = {0.56, 0.54, 0.551, 0.53, 0.521, 0.519, 0.53, 0.549};
  const std::int8_t expected[] = {1, 1, 1, 1, 1, 0, 0, 0};
  for (std::size_t k = 0; k < std::size(path); ++k) {
    s = next_signal(s, path[k], kCfg);
    EXPECT_EQ(s, expected[k]) << "step " << k << " p=" << path[k];
  }
}

TEST(NextSignal, IsConstexpr_UsableAtCompileTime) {
  static_assert(next_signal(0, 0.9, StrategyConfig{}) == 1);
  static_assert(next_signal(1, 0.5, StrategyConfig{}) == 0);
  SUCCEED();
}

// ---- target_size --------------------------------------------------------------------------------------------

TEST(TargetSize, RiskOverPriceTimesVolatility_GivesShares) {
  // 50 / (100 * 0.01) = 50 shares.
  EXPECT_EQ(target_size(1'000'000, 0.01, kCfg, 1'000), 50);
  // 50 / (250 * 0.004) = 50 shares.
  EXPECT_EQ(target_size(2'500'000, 0.004, kCfg, 1'000), 50);
}

TEST(TargetSize, HigherVolatility_SmallerPosition) {
  EXPECT_EQ(target_size(1'000'000, 0.02, kCfg, 1'000), 25);
  EXPECT_EQ(target_size(1'000'000, 0.005, kCfg, 1'000), 100);
}

TEST(TargetSize, FractionalShares_RoundDown) {
  // 50 / (102 * 0.01) = 49.02 -> 49.
  EXPECT_EQ(target_size(1'020'000, 0.01, kCfg, 1'000), 49);
}

TEST(TargetSize, Lot_RoundsDownToWholeLots) {
  StrategyConfig c = kCfg;
  c.lot = 20;
  EXPECT_EQ(target_size(1'000'000, 0.01, c, 1'000), 40);  // 50 -> 2 lots
  c.lot = 100;
  EXPECT_EQ(target_size(1'000'000, 0.01, c, 1'000), 0);  // not even one lot
}

TEST(TargetSize, NonPositiveLot_TreatedAsOne) {
  StrategyConfig c = kCfg;
  c.lot = 0;
  EXPECT_EQ(target_size(1'000'000, 0.01, c, 1'000), 50);
  c.lot = -5;
  EXPECT_EQ(target_size(1'000'000, 0.01, c, 1'000), 50);
}

TEST(TargetSize, AboveMaxPosition_CappedAtMaxPosition) { EXPECT_EQ(target_size(1'000'000, 0.01, kCfg, 30), 30); }

TEST(TargetSize, CapAndLot_CapRoundedDownToLot) {
  StrategyConfig c = kCfg;
  c.lot = 10;
  EXPECT_EQ(target_size(1'000'000, 0.01, c, 35), 30);
}

TEST(TargetSize, VolatilityBelowFloor_UsesMinVolatility) {
  // 50 / (100 * 0.0005) = 1000 shares, whether the volatility is 0 or just below the floor.
  EXPECT_EQ(target_size(1'000'000, 0.0, kCfg, 5'000), 1'000);
  EXPECT_EQ(target_size(1'000'000, 0.0001, kCfg, 5'000), 1'000);
}

TEST(TargetSize, ZeroVolatilityAndZeroFloor_CappedNotOverflowing) {
  StrategyConfig c = kCfg;
  c.min_volatility = 0.0;
  EXPECT_EQ(target_size(1'000'000, 0.0, c, 700), 700);
}

// ---- order_quantity -----------------------------------------------------------------------------------------

TEST(OrderQuantity, FromFlat_TradesWholeTarget) {
  EXPECT_EQ(order_quantity(0, 50, kCfg), 50);
  EXPECT_EQ(order_quantity(0, -50, kCfg), -50);
}

TEST(OrderQuantity, SameSideSmallChange_NoTrade) {
  EXPECT_EQ(order_quantity(50, 55, kCfg), 0);  // 5 < 0.25 * 55
  EXPECT_EQ(order_quantity(50, 45, kCfg), 0);  // 5 < 0.25 * 45
  EXPECT_EQ(order_quantity(-50, -45, kCfg), 0);
  EXPECT_EQ(order_quantity(-50, -60, kCfg), 0);  // 10 < 15
}

TEST(OrderQuantity, SameSideChangeAtThreshold_Trades) {
  EXPECT_EQ(order_quantity(30, 40, kCfg), 10);  // 10 == 0.25 * 40: not below, traded
  EXPECT_EQ(order_quantity(50, 70, kCfg), 20);  // 20 > 17.5
  EXPECT_EQ(order_quantity(-30, -40, kCfg), -10);
  EXPECT_EQ(order_quantity(100, 50, kCfg), -50);
}

TEST(OrderQuantity, SideFlip_TradesFullDistance) {
  EXPECT_EQ(order_quantity(50, -50, kCfg), -100);
  EXPECT_EQ(order_quantity(-40, 45, kCfg), 85);
}

TEST(OrderQuantity, TargetFlat_ClosesWholePosition) {
  EXPECT_EQ(order_quantity(50, 0, kCfg), -50);
  EXPECT_EQ(order_quantity(-3, 0, kCfg), 3);
  EXPECT_EQ(order_quantity(0, 0, kCfg), 0);
}

TEST(OrderQuantity, ZeroRebalanceFraction_TradesEveryChange) {
  StrategyConfig c = kCfg;
  c.rebalance_fraction = 0.0;
  EXPECT_EQ(order_quantity(50, 51, c), 1);
  EXPECT_EQ(order_quantity(50, 50, c), 0);
}

// ---- limit_price --------------------------------------------------------------------------------------------

TEST(LimitPrice, Buy_CollarAbovePrice) { EXPECT_EQ(limit_price(1'000'000, Side::Buy, kCfg), 1'005'000); }

TEST(LimitPrice, Sell_CollarBelowPrice) { EXPECT_EQ(limit_price(1'000'000, Side::Sell, kCfg), 995'000); }

TEST(LimitPrice, FractionalCollar_RoundsUpSoStillMarketable) {
  // 1001 ticks x 50 bps = 5.005 ticks -> 6.
  EXPECT_EQ(limit_price(1'001, Side::Buy, kCfg), 1'007);
  EXPECT_EQ(limit_price(1'001, Side::Sell, kCfg), 995);
}

TEST(LimitPrice, SellCollarBeyondPrice_FloorsAtOneTick) {
  StrategyConfig c = kCfg;
  c.limit_collar_bps = 20'000;  // 200 %
  EXPECT_EQ(limit_price(100, Side::Sell, c), 1);
  EXPECT_EQ(limit_price(100, Side::Buy, c), 300);
}

TEST(LimitPrice, ZeroCollar_IsThePrice) {
  StrategyConfig c = kCfg;
  c.limit_collar_bps = 0.0;
  EXPECT_EQ(limit_price(123'456, Side::Buy, c), 123'456);
  EXPECT_EQ(limit_price(123'456, Side::Sell, c), 123'456);
}

}  // namespace
