// Fixed-layout records of the executor and the integer units they use.
//
// Prices are integer ticks and quantities integer shares: no floating point in order or position state.
// Floating point appears only where it enters (a prediction's probability, price and volatility) and is
// validated and converted there. Every record that crosses into Python is a standard-layout struct whose
// layout matches a NumPy structured dtype (hft_exec/__init__.py), checked by a test.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace hft_exec {

using Price = std::int64_t;          // ticks of 1 / kTicksPerUnit currency units
using Qty = std::int64_t;            // shares; signed where it is a position
using Money = std::int64_t;          // ticks x shares (cash, PnL, fees)
using Nanos = std::int64_t;          // epoch nanoseconds
using InstrumentId = std::uint32_t;  // dense index assigned by the caller (ticker table)
using OrderId = std::uint64_t;       // client order id, unique and deterministic

inline constexpr std::int64_t kTicksPerUnit = 10'000;  // 1 tick = 0.0001 currency units
// Scale factors are multiplications, not divisions by 1e4: a division is ~13 cycles and the order path had
// six. x * 1e-4 equals x / 1e4 whenever the quotient is a double (integers, halves...), so integer ticks
// and fees round the same; elsewhere the two differ by at most an ulp.
inline constexpr double kUnitsPerTick = 1.0 / kTicksPerUnit;  // currency units per tick (the double nearest 1e-4)
inline constexpr double kPerBasisPoint = 1e-4;                // a basis point as a fraction

enum class Side : std::int8_t { Buy = 1, Sell = -1 };

// +1 for a buy, -1 for a sell. Side-dependent quantities and prices are arithmetic on this rather than a
// branch on the side: the side of the next order or fill is as random as the signal, so such a branch is
// mispredicted on about every other order (worth ~0.6 ns a decision on the trade-heavy benchmark).
[[nodiscard, gnu::always_inline]] constexpr std::int64_t sign(Side s) noexcept { return static_cast<std::int64_t>(s); }
[[nodiscard, gnu::always_inline]] constexpr Side side_of(std::int64_t signed_qty) noexcept {  // > 0: Buy, else Sell
  return static_cast<Side>(1 - 2 * static_cast<int>(signed_qty <= 0));
}

// Why a prediction did not become an order. Stable codes: metrics, the journal and Python use them.
enum class Reason : std::uint8_t {
  None = 0,
  InvalidProbability,   // NaN, infinite, outside [0, 1]
  InvalidPrice,         // NaN, infinite, zero or negative, or too large for integer ticks
  InvalidVolatility,    // NaN, infinite or negative
  UnknownInstrument,    // instrument id not registered
  DuplicatePrediction,  // bar time not after the last prediction seen for the instrument
  StalePrediction,      // older than max_prediction_age_ns when it arrived
  PriceBand,            // price too far from the last trade
  KillSwitch,           // halted by the operator
  DailyLossLimit,       // the day's loss reached the limit: halted for the day
  MaxOrderNotional,
  MaxPosition,
  MaxGrossNotional,
  OrderRate,  // token bucket empty
  TooManyOpenOrders,
  FutureBarTime,     // bar time later than its arrival by more than max_future_ns (a bad clock)
  VenueRejected,     // the gateway refused the order
  VenueUnavailable,  // the order's venue stopped answering: cancelled there once it answered again
  Count
};

inline constexpr const char* reason_name(Reason r) noexcept {
  switch (r) {
    case Reason::None: return "none";
    case Reason::InvalidProbability: return "invalid_probability";
    case Reason::InvalidPrice: return "invalid_price";
    case Reason::InvalidVolatility: return "invalid_volatility";
    case Reason::UnknownInstrument: return "unknown_instrument";
    case Reason::DuplicatePrediction: return "duplicate_prediction";
    case Reason::StalePrediction: return "stale_prediction";
    case Reason::PriceBand: return "price_band";
    case Reason::KillSwitch: return "kill_switch";
    case Reason::DailyLossLimit: return "daily_loss_limit";
    case Reason::MaxOrderNotional: return "max_order_notional";
    case Reason::MaxPosition: return "max_position";
    case Reason::MaxGrossNotional: return "max_gross_notional";
    case Reason::OrderRate: return "order_rate";
    case Reason::TooManyOpenOrders: return "too_many_open_orders";
    case Reason::FutureBarTime: return "future_bar_time";
    case Reason::VenueRejected: return "venue_rejected";
    case Reason::VenueUnavailable: return "venue_unavailable";
    case Reason::Count: break;
  }
  return "unknown";
}

// Round half away from zero (std::llround) without the libm call; exact for |x| < 2^52. Adding the largest
// double below one half, not one half, and truncating: x + 0.5 would round up in floating point for the
// double just below 0.5 (to 1.0). Two dependent operations: every decision converts its price this way.
[[nodiscard, gnu::always_inline]] inline std::int64_t round_half_away(double x) noexcept {
  return static_cast<std::int64_t>(x + std::copysign(0.49999999999999994, x));  // truncation toward zero
}

// One model prediction for one instrument's bar: the executor's input.
struct Prediction {
  Nanos ts_ns;    // the bar's time, as of its end (when the prediction became possible)
  Nanos recv_ns;  // when the executor received it: "now" for staleness and rate limits
  InstrumentId instrument;
  std::uint32_t reserved;  // explicit padding, keep 0
  double probability;      // P(close in h minutes > close now)
  double price;            // the bar's close, currency units
  double volatility;       // recent per-bar volatility (e.g. rv over 30 bars), a fraction
};

enum class Action : std::uint8_t { Hold = 0, Order = 1, Reject = 2 };
inline constexpr int kActionCount = 3;

inline constexpr const char* action_name(Action a) noexcept {
  switch (a) {
    case Action::Hold: return "hold";
    case Action::Order: return "order";
    case Action::Reject: return "reject";
  }
  return "unknown";
}

// What the executor did with one prediction.
struct Decision {
  Nanos ts_ns;
  OrderId order_id;  // 0 unless action == Order
  Qty qty;           // signed order quantity (buy > 0), 0 unless action == Order
  Price price;       // limit price in ticks, 0 unless action == Order
  Qty target;        // target position after the decision
  InstrumentId instrument;
  Action action;
  Reason reason;  // why it was rejected, None otherwise
  std::uint16_t reserved;
};

enum class EventType : std::uint8_t {
  PredictionSeen = 1,  // a prediction was processed (dedupe across restarts). reason None: its market data
                       // was accepted (price, qty = the new signal); PriceBand: price = the refused print;
                       // otherwise price 0 and reason = why it was invalid
  OrderSent = 2,       // an order passed risk and went to the gateway
  Fill = 3,            // (partial) execution: qty signed, price ticks, fee
  OrderDone = 4,       // order closed: filled, or cancelled (reason = why)
  Halt = 5,            // kill switch or daily loss limit engaged (reason)
  Resume = 6,
  Rejected = 7,  // a valid prediction whose order was refused (halt or risk rule in reason; qty = target)
};
inline constexpr int kFirstEventType = 1, kLastEventType = 7;

// The names Python sees (hft_exec.EVENT_TYPES, hft_exec.EventType): defined here only.
inline constexpr const char* event_type_name(EventType t) noexcept {
  switch (t) {
    case EventType::PredictionSeen: return "prediction_seen";
    case EventType::OrderSent: return "order_sent";
    case EventType::Fill: return "fill";
    case EventType::OrderDone: return "order_done";
    case EventType::Halt: return "halt";
    case EventType::Resume: return "resume";
    case EventType::Rejected: return "rejected";
  }
  return "unknown";
}

// The executor's outbox and journal record: appending these to durable storage and replaying them into a
// fresh executor recovers positions, cash, open orders and the prediction dedupe state exactly.
struct Event {
  Nanos ts_ns;  // event time (recv time of the triggering prediction or exchange time)
  OrderId order_id;
  Price price;
  Qty qty;  // signed: buy > 0
  Money fee;
  Nanos bar_ts_ns;  // PredictionSeen: the prediction's bar time
  InstrumentId instrument;
  EventType type;
  Reason reason;
  std::uint16_t venue;  // OrderSent, Fill: the venue (index into ExecutorConfig::venues; 0 with one venue)
};

static_assert(std::is_standard_layout_v<Prediction> && std::is_trivially_copyable_v<Prediction>);
static_assert(std::is_standard_layout_v<Decision> && std::is_trivially_copyable_v<Decision>);
static_assert(std::is_standard_layout_v<Event> && std::is_trivially_copyable_v<Event>);
static_assert(sizeof(Prediction) == 48);
static_assert(sizeof(Decision) == 48);
static_assert(sizeof(Event) == 56);

}  // namespace hft_exec
