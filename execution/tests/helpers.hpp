// Shared fixtures of the executor tests: clock constants, prediction builders, event filters.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "hft_exec/exchange.hpp"
#include "hft_exec/executor.hpp"
#include "hft_exec/types.hpp"

namespace hft_exec_test {

using namespace hft_exec;

inline constexpr Nanos kMicro = 1'000;
inline constexpr Nanos kSecond = 1'000'000'000;
inline constexpr Nanos kMinute = 60 * kSecond;
inline constexpr Nanos kHour = 60 * kMinute;
inline constexpr Nanos kDay = 24 * kHour;
inline constexpr Nanos kDay0 = 19'700 * kDay;                      // 2023-12-09 00:00 UTC
inline constexpr Nanos kOpen = kDay0 + 14 * kHour + 30 * kMinute;  // 14:30 UTC, the New York open
inline constexpr Nanos kRecvDelay = 2 * 1'000'000;                 // 2 ms from bar time to the executor

// The tests' sizing: risk_per_trade 50 (the expected quantities are worked out with it), else the defaults.
inline StrategyConfig strategy_config() {
  StrategyConfig c{};
  c.risk_per_trade = 50.0;
  return c;
}
inline ExecutorConfig test_config() {
  ExecutorConfig c{};
  c.strategy = strategy_config();
  return c;
}

// Bar `bar` (minutes after the open) of instrument `i`, received kRecvDelay after its bar time.
inline Prediction pred(InstrumentId i, int bar, double p, double price, double vol = 0.01) {
  const Nanos ts = kOpen + bar * kMinute;
  return Prediction{ts, ts + kRecvDelay, i, 0, p, price, vol};
}

inline Prediction pred_at(InstrumentId i, Nanos ts, Nanos recv, double p, double price, double vol = 0.01) {
  return Prediction{ts, recv, i, 0, p, price, vol};
}

inline Price ticks(double units) { return static_cast<Price>(std::llround(units * kTicksPerUnit)); }

inline std::vector<Event> of_type(std::span<const Event> events, EventType t) {
  std::vector<Event> out;
  for (const Event& e : events)
    if (e.type == t) out.push_back(e);
  return out;
}

inline std::size_t count_of(std::span<const Event> events, EventType t) { return of_type(events, t).size(); }

inline const PaperExchange& paper(const Executor& ex) { return dynamic_cast<const PaperExchange&>(ex.gateway()); }

// Records what a venue reports.
struct FillRecorder final : FillListener {
  std::vector<FillReport> fills;
  void on_fill(const FillReport& f) noexcept override { fills.push_back(f); }
};

}  // namespace hft_exec_test
