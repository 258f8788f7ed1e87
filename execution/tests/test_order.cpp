// Order state machine: every legal and illegal transition, and fills; the rounding to integer units.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <set>
#include <utility>

#include "hft_exec/order.hpp"

namespace {

using namespace hft_exec;
using S = OrderState;

constexpr std::array<S, 6> kAll{S::New, S::Sent, S::PartiallyFilled, S::Filled, S::Cancelled, S::Rejected};

// The legal transitions, written out independently of the implementation.
const std::set<std::pair<S, S>> kLegal{
    {S::New, S::Sent},
    {S::New, S::Rejected},
    {S::Sent, S::PartiallyFilled},
    {S::Sent, S::Filled},
    {S::Sent, S::Cancelled},
    {S::Sent, S::Rejected},
    {S::PartiallyFilled, S::PartiallyFilled},
    {S::PartiallyFilled, S::Filled},
    {S::PartiallyFilled, S::Cancelled},
};

Order sent_buy(Qty qty) {
  Order o{7, 3, Side::Buy, qty, 0, 1'000'000, 0, S::New};
  EXPECT_TRUE(o.transition(S::Sent));
  return o;
}

TEST(OrderState, EveryPair_LegalExactlyWhenListed) {
  int legal = 0;
  for (S from : kAll) {
    for (S to : kAll) {
      const bool expected = kLegal.count({from, to}) == 1;
      EXPECT_EQ(can_transition(from, to), expected)
          << "from " << static_cast<int>(from) << " to " << static_cast<int>(to);
      legal += can_transition(from, to);
    }
  }
  EXPECT_EQ(legal, 9);
}

TEST(OrderState, TerminalStates_HaveNoWayOut) {
  for (S from : {S::Filled, S::Cancelled, S::Rejected}) {
    EXPECT_TRUE(is_terminal(from));
    for (S to : kAll) EXPECT_FALSE(can_transition(from, to));
  }
}

TEST(OrderState, WorkingStates_AreNotTerminal) {
  EXPECT_FALSE(is_terminal(S::New));
  EXPECT_FALSE(is_terminal(S::Sent));
  EXPECT_FALSE(is_terminal(S::PartiallyFilled));
}

TEST(OrderState, NewOrder_CannotFillOrCancelBeforeSent) {
  EXPECT_FALSE(can_transition(S::New, S::PartiallyFilled));
  EXPECT_FALSE(can_transition(S::New, S::Filled));
  EXPECT_FALSE(can_transition(S::New, S::Cancelled));
}

TEST(OrderState, PartiallyFilled_CannotBeRejectedOrGoBack) {
  EXPECT_FALSE(can_transition(S::PartiallyFilled, S::Rejected));
  EXPECT_FALSE(can_transition(S::PartiallyFilled, S::Sent));
  EXPECT_FALSE(can_transition(S::PartiallyFilled, S::New));
}

TEST(OrderTransition, EveryPair_AppliesLegalAndRefusesIllegalUnchanged) {
  for (S from : kAll) {
    for (S to : kAll) {
      Order o{};
      o.state = from;
      const bool ok = o.transition(to);
      EXPECT_EQ(ok, kLegal.count({from, to}) == 1);
      EXPECT_EQ(o.state, ok ? to : from);
    }
  }
}

TEST(OrderFill, PartialThenRest_PartiallyFilledThenFilled) {
  Order o = sent_buy(100);
  ASSERT_TRUE(o.apply_fill(30));
  EXPECT_EQ(o.state, S::PartiallyFilled);
  EXPECT_EQ(o.filled, 30);
  EXPECT_EQ(o.remaining(), 70);
  ASSERT_TRUE(o.apply_fill(20));
  EXPECT_EQ(o.state, S::PartiallyFilled);
  EXPECT_EQ(o.remaining(), 50);
  ASSERT_TRUE(o.apply_fill(50));
  EXPECT_EQ(o.state, S::Filled);
  EXPECT_EQ(o.filled, 100);
  EXPECT_EQ(o.remaining(), 0);
}

TEST(OrderFill, WholeQuantityAtOnce_Filled) {
  Order o = sent_buy(100);
  ASSERT_TRUE(o.apply_fill(100));
  EXPECT_EQ(o.state, S::Filled);
}

TEST(OrderFill, MoreThanRemaining_RefusedUnchanged) {
  Order o = sent_buy(100);
  ASSERT_TRUE(o.apply_fill(60));
  EXPECT_FALSE(o.apply_fill(41));
  EXPECT_EQ(o.filled, 60);
  EXPECT_EQ(o.state, S::PartiallyFilled);
}

TEST(OrderFill, ZeroOrNegativeQuantity_Refused) {
  Order o = sent_buy(100);
  EXPECT_FALSE(o.apply_fill(0));
  EXPECT_FALSE(o.apply_fill(-5));
  EXPECT_EQ(o.filled, 0);
  EXPECT_EQ(o.state, S::Sent);
}

TEST(OrderFill, NotYetSent_Refused) {
  Order o{1, 0, Side::Buy, 10, 0, 100, 0, S::New};
  EXPECT_FALSE(o.apply_fill(5));
  EXPECT_FALSE(o.apply_fill(10));
  EXPECT_EQ(o.filled, 0);
  EXPECT_EQ(o.state, S::New);
}

TEST(OrderFill, TerminalOrder_Refused) {
  for (S terminal : {S::Cancelled, S::Rejected}) {
    Order o{1, 0, Side::Sell, 10, 0, 100, 0, terminal};
    EXPECT_FALSE(o.apply_fill(5));
    EXPECT_EQ(o.filled, 0);
    EXPECT_EQ(o.state, terminal);
  }
  Order filled = sent_buy(10);
  ASSERT_TRUE(filled.apply_fill(10));
  EXPECT_FALSE(filled.apply_fill(1));
  EXPECT_EQ(filled.filled, 10);
}

TEST(OrderFill, CancelAfterPartial_KeepsFilledQuantity) {
  Order o = sent_buy(100);
  ASSERT_TRUE(o.apply_fill(40));
  ASSERT_TRUE(o.transition(S::Cancelled));
  EXPECT_EQ(o.filled, 40);
  EXPECT_FALSE(o.apply_fill(10));
}

TEST(OrderQty, SignedRemaining_NegativeForSell) {
  Order buy = sent_buy(100);
  ASSERT_TRUE(buy.apply_fill(25));
  EXPECT_EQ(buy.signed_remaining(), 75);
  Order sell{2, 0, Side::Sell, 80, 0, 100, 0, S::Sent};
  ASSERT_TRUE(sell.apply_fill(30));
  EXPECT_EQ(sell.remaining(), 50);
  EXPECT_EQ(sell.signed_remaining(), -50);
}

}  // namespace

// Prices and fees become integer ticks through round_half_away: it must agree with std::llround (what the
// Python reference uses) on every half, its neighbours, and the double just below 0.5 (which x + 0.5 would
// round up to 1).
TEST(Units, RoundHalfAway_MatchesLlroundOnHalvesAndTheirNeighbours) {
  EXPECT_EQ(hft_exec::round_half_away(0.49999999999999994), 0);
  EXPECT_EQ(hft_exec::round_half_away(-0.49999999999999994), 0);
  EXPECT_EQ(hft_exec::round_half_away(0.5), 1);
  EXPECT_EQ(hft_exec::round_half_away(-0.5), -1);
  EXPECT_EQ(hft_exec::round_half_away(2.5), 3);
  EXPECT_EQ(hft_exec::round_half_away(0.0), 0);
  EXPECT_EQ(hft_exec::round_half_away(4503599627370495.0), 4503599627370495);  // 2^52 - 1
  std::uint64_t checked = 0;
  for (int e = -40; e < 52; ++e) {
    for (int k = 0; k < 200; ++k) {
      const double base = std::ldexp(1.0 + k / 200.0, e);
      const double half = std::floor(base) + 0.5;
      for (double x : {half, std::nextafter(half, 0.0), std::nextafter(half, 1e300), base, std::nextafter(base, 0.0)}) {
        if (!(x < 4503599627370496.0)) continue;  // 2^52: the documented domain
        ASSERT_EQ(hft_exec::round_half_away(x), std::llround(x)) << std::hexfloat << x;
        ASSERT_EQ(hft_exec::round_half_away(-x), std::llround(-x)) << std::hexfloat << -x;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 80'000u);
}

// Scale factors multiply by 1e-4 instead of dividing by 1e4 (kUnitsPerTick, kPerBasisPoint): the same double
// whenever the quotient is one, which is what integer rounding of ticks and fees depends on.
TEST(Units, TimesOneTenThousandth_EqualsDivisionWhereTheQuotientIsADouble) {
  static_assert(hft_exec::kUnitsPerTick == 1.0 / hft_exec::kTicksPerUnit && hft_exec::kPerBasisPoint == 1e-4);
  for (std::int64_t k = -2'000'000; k <= 2'000'000; ++k) {  // quotients k / 2: every integer and half
    const double n = static_cast<double>(k) * 5'000.0;
    ASSERT_EQ(n * hft_exec::kUnitsPerTick, n / 1e4) << k;
  }
  for (std::int64_t k = 1; k < 1'000'000'000'000; k = k * 3 + 1) {  // large integer quotients
    const double n = static_cast<double>(k) * 1e4;
    ASSERT_EQ(n * hft_exec::kUnitsPerTick, static_cast<double>(k)) << k;
  }
}
