// Configuration of the strategy, the risk limits and the paper exchange. Plain aggregates with documented
// defaults; Python builds them from hft.execution.config (HFT_EXEC_* environment variables).
#pragma once

#include <vector>

#include "hft_exec/types.hpp"

namespace hft_exec {

// Probability thresholds with hysteresis -> a signal in {-1, 0, +1}; size scaled by volatility.
struct StrategyConfig {
  double enter_long = 0.55;   // flat/short -> long when p >= enter_long
  double exit_long = 0.52;    // long -> flat when p < exit_long
  double enter_short = 0.45;  // flat/long -> short when p <= enter_short
  double exit_short = 0.48;   // short -> flat when p > exit_short
  // Target |position| = risk_per_trade / (price * max(volatility, min_volatility)), in currency units of
  // one bar's expected move: a calmer market gets a bigger position for the same risk.
  double risk_per_trade = 20.0;
  double min_volatility = 0.0005;
  Qty lot = 1;  // positions are multiples of lot shares
  // With the signal unchanged, a size change smaller than this fraction of the target is not traded
  // (no churn from every small move in price or volatility).
  double rebalance_fraction = 0.25;
  double limit_collar_bps = 50.0;  // marketable limit: price +- collar
};

struct RiskConfig {
  Qty max_position = 1'000;                       // |position + working| per instrument, shares
  double max_gross_notional = 1.0e6;              // sum |position + working| x price over instruments
  double max_order_notional = 1.0e5;              // one order's qty x limit price
  double orders_per_second = 50.0;                // token bucket refill rate
  double order_burst = 20.0;                      // token bucket capacity
  Nanos max_prediction_age_ns = 120'000'000'000;  // recv_ns - ts_ns above this: stale
  Nanos max_future_ns = 5'000'000'000;            // ts_ns - recv_ns above this: a bar from the future
  // |price / last trade - 1| above this: rejected, unless the previous price was rejected too and this one
  // is within the band of it (two consistent prints confirm a genuine gap, e.g. after a halt or a split).
  double price_band = 0.10;
  double daily_loss_limit = 10'000.0;  // halt for the day when the day's PnL <= -limit
  std::uint32_t max_open_orders = 4;   // working orders per instrument
};

struct PaperExchangeConfig {
  Nanos latency_ns = 100'000;  // order send -> arrival at the exchange
  double fee_bps = 0.5;        // of notional, per fill
  double fee_per_share = 0.0;  // currency units per share
  double slippage_bps = 1.0;   // adverse, applied to the market price
  Qty max_fill_qty = 0;        // liquidity per instrument per market update (0 = unlimited): partial fills
};

// One venue of several (a paper venue here: its latency, fees, slippage and liquidity) and its own limit.
struct VenueConfig {
  PaperExchangeConfig exchange{};
  double max_working_notional = 1.0e12;  // sum of remaining qty x limit of the orders working there
};

struct ExecutorConfig {
  StrategyConfig strategy{};
  RiskConfig risk{};
  PaperExchangeConfig exchange{};  // the one paper venue, when `venues` is empty
  std::uint32_t max_instruments = 1'024;
  // The first client order id (ids increase from it): executors that share venues and records (shards of the
  // tickers, hft.execution.shards) each get an id space of their own.
  OrderId first_order_id = 1;
  // Several venues: orders routed per order by a VenueRouter (hft_exec/router.hpp); empty: `exchange` alone.
  std::vector<VenueConfig> venues{};
};

}  // namespace hft_exec
