// The only file that knows pybind11: registers the core's types and the Executor as hft_exec._core.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "hft_exec/executor.hpp"
#include "hft_exec/strategy.hpp"

namespace py = pybind11;
using namespace hft_exec;

namespace {

// Field names of the records shared with NumPy, in layout order (layout() gives offsets and sizes).
template <typename T>
constexpr std::array<const char*, 0> kFields{};
template <>
constexpr std::array kFields<Prediction>{"ts_ns",       "recv_ns", "instrument", "reserved",
                                         "probability", "price",   "volatility"};
template <>
constexpr std::array kFields<Decision>{"ts_ns",      "order_id", "qty",    "price",   "target",
                                       "instrument", "action",   "reason", "reserved"};
template <>
constexpr std::array kFields<Event>{"ts_ns",     "order_id",   "price", "qty",    "fee",
                                    "bar_ts_ns", "instrument", "type",  "reason", "venue"};

// A 1-d, C-contiguous NumPy array of `T` records: the structured dtype with T's field names and size (the
// offsets are fixed by the dtypes in hft_exec, checked against layout() by a test).
template <typename T>
std::span<T> records(const py::array& a, const char* what, const char* dtype_name, bool writable) {
  using R = std::remove_const_t<T>;
  const std::string name(what);
  if (a.ndim() != 1) throw py::value_error(name + ": expected a 1-d array");
  py::object names = a.dtype().attr("names");
  bool same = !names.is_none() && py::len(names) == kFields<R>.size() && a.itemsize() == sizeof(R);
  for (std::size_t k = 0; same && k < kFields<R>.size(); ++k)
    same = names[py::int_(k)].cast<std::string>() == kFields<R>[k];
  if (!same)
    throw py::value_error(name + ": expected hft_exec." + dtype_name + " records (its field names and " +
                          std::to_string(sizeof(R)) + "-byte record size), got " +
                          py::str(a.dtype()).cast<std::string>());
  if (a.shape(0) > 1 && a.strides(0) != static_cast<py::ssize_t>(sizeof(R)))
    throw py::value_error(name + ": array must be contiguous");
  if (writable && !a.writeable()) throw py::value_error(name + ": array is read-only");
  return {static_cast<T*>(const_cast<void*>(a.data())), static_cast<std::size_t>(a.shape(0))};
}

#define FIELD(T, f) py::make_tuple(#f, offsetof(T, f), sizeof(T::f))

py::dict layout() {
  py::dict d;
  d["Prediction"] =
      py::make_tuple(sizeof(Prediction),
                     py::make_tuple(FIELD(Prediction, ts_ns), FIELD(Prediction, recv_ns), FIELD(Prediction, instrument),
                                    FIELD(Prediction, reserved), FIELD(Prediction, probability),
                                    FIELD(Prediction, price), FIELD(Prediction, volatility)));
  d["Decision"] = py::make_tuple(
      sizeof(Decision), py::make_tuple(FIELD(Decision, ts_ns), FIELD(Decision, order_id), FIELD(Decision, qty),
                                       FIELD(Decision, price), FIELD(Decision, target), FIELD(Decision, instrument),
                                       FIELD(Decision, action), FIELD(Decision, reason), FIELD(Decision, reserved)));
  d["Event"] = py::make_tuple(
      sizeof(Event), py::make_tuple(FIELD(Event, ts_ns), FIELD(Event, order_id), FIELD(Event, price), FIELD(Event, qty),
                                    FIELD(Event, fee), FIELD(Event, bar_ts_ns), FIELD(Event, instrument),
                                    FIELD(Event, type), FIELD(Event, reason), FIELD(Event, venue)));
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "C++ executor core (private; import hft_exec)";
  m.attr("TICKS_PER_UNIT") = kTicksPerUnit;
  py::list reasons;
  for (int r = 0; r < static_cast<int>(Reason::Count); ++r) reasons.append(reason_name(static_cast<Reason>(r)));
  m.attr("REASONS") = py::tuple(reasons);
  py::list actions;
  for (int a = 0; a < kActionCount; ++a) actions.append(action_name(static_cast<Action>(a)));
  m.attr("ACTIONS") = py::tuple(actions);
  py::dict event_types;
  for (int t = kFirstEventType; t <= kLastEventType; ++t)
    event_types[py::int_(t)] = event_type_name(static_cast<EventType>(t));
  m.attr("EVENT_TYPES") = event_types;
  m.def("layout", &layout, "sizes and (name, offset, size) of the fields of the records shared with NumPy");

  py::class_<StrategyConfig>(m, "StrategyConfig")
      .def(py::init<>())
      .def_readwrite("enter_long", &StrategyConfig::enter_long)
      .def_readwrite("exit_long", &StrategyConfig::exit_long)
      .def_readwrite("enter_short", &StrategyConfig::enter_short)
      .def_readwrite("exit_short", &StrategyConfig::exit_short)
      .def_readwrite("risk_per_trade", &StrategyConfig::risk_per_trade)
      .def_readwrite("min_volatility", &StrategyConfig::min_volatility)
      .def_readwrite("lot", &StrategyConfig::lot)
      .def_readwrite("rebalance_fraction", &StrategyConfig::rebalance_fraction)
      .def_readwrite("limit_collar_bps", &StrategyConfig::limit_collar_bps);
  py::class_<RiskConfig>(m, "RiskConfig")
      .def(py::init<>())
      .def_readwrite("max_position", &RiskConfig::max_position)
      .def_readwrite("max_gross_notional", &RiskConfig::max_gross_notional)
      .def_readwrite("max_order_notional", &RiskConfig::max_order_notional)
      .def_readwrite("orders_per_second", &RiskConfig::orders_per_second)
      .def_readwrite("order_burst", &RiskConfig::order_burst)
      .def_readwrite("max_prediction_age_ns", &RiskConfig::max_prediction_age_ns)
      .def_readwrite("max_future_ns", &RiskConfig::max_future_ns)
      .def_readwrite("price_band", &RiskConfig::price_band)
      .def_readwrite("daily_loss_limit", &RiskConfig::daily_loss_limit)
      .def_readwrite("max_open_orders", &RiskConfig::max_open_orders);
  py::class_<PaperExchangeConfig>(m, "PaperExchangeConfig")
      .def(py::init<>())
      .def_readwrite("latency_ns", &PaperExchangeConfig::latency_ns)
      .def_readwrite("fee_bps", &PaperExchangeConfig::fee_bps)
      .def_readwrite("fee_per_share", &PaperExchangeConfig::fee_per_share)
      .def_readwrite("slippage_bps", &PaperExchangeConfig::slippage_bps)
      .def_readwrite("max_fill_qty", &PaperExchangeConfig::max_fill_qty);
  py::class_<VenueConfig>(m, "VenueConfig")
      .def(py::init<>())
      .def_readwrite("exchange", &VenueConfig::exchange)
      .def_readwrite("max_working_notional", &VenueConfig::max_working_notional);
  py::class_<ExecutorConfig>(m, "ExecutorConfig")
      .def(py::init<>())
      .def_readwrite("strategy", &ExecutorConfig::strategy)
      .def_readwrite("risk", &ExecutorConfig::risk)
      .def_readwrite("exchange", &ExecutorConfig::exchange)
      .def_readwrite("max_instruments", &ExecutorConfig::max_instruments)
      .def_readwrite("first_order_id", &ExecutorConfig::first_order_id)
      .def_readwrite("venues", &ExecutorConfig::venues, "several venues (a list of VenueConfig), routed per order");

  py::class_<Executor>(m, "Executor")
      .def(py::init<const ExecutorConfig&, std::uint32_t>(), py::arg("config"), py::arg("instruments"))
      .def(
          "on_prediction",
          [](Executor& ex, Nanos ts_ns, Nanos recv_ns, std::uint32_t instrument, double probability, double price,
             double volatility) {
            const Decision d =
                ex.on_prediction(Prediction{ts_ns, recv_ns, instrument, 0, probability, price, volatility});
            return py::make_tuple(static_cast<int>(d.action), static_cast<int>(d.reason), d.order_id, d.qty, d.price,
                                  d.target);
          },
          py::arg("ts_ns"), py::arg("recv_ns"), py::arg("instrument"), py::arg("probability"), py::arg("price"),
          py::arg("volatility"), "one prediction -> (action, reason, order_id, qty, limit_ticks, target)")
      .def(
          "on_predictions",
          [](Executor& ex, const py::array& in, const py::array& out) {
            auto preds = records<const Prediction>(in, "predictions", "PREDICTION_DTYPE", false);
            auto decisions = records<Decision>(out, "decisions", "DECISION_DTYPE", true);
            if (decisions.size() < preds.size()) throw py::value_error("decisions: shorter than predictions");
            py::gil_scoped_release unlocked;  // halt() from another thread lands mid-batch
            ex.on_predictions(preds, decisions);
          },
          py::arg("predictions"), py::arg("decisions"),
          "a structured array of predictions -> decisions written into `decisions` (no copies)")
      .def(
          "drain_events",
          [](Executor& ex) {
            auto ev = ex.events();
            py::bytes out(reinterpret_cast<const char*>(ev.data()), ev.size() * sizeof(Event));
            ex.clear_events();
            return out;
          },
          "the outbox as bytes of Event records (then cleared)")
      .def(
          "recover",
          [](Executor& ex, const py::array& events) {
            ex.recover(records<const Event>(events, "events", "EVENT_DTYPE", false));
          },
          py::arg("events"))
      .def("disconnect_venue", &Executor::disconnect_venue, py::arg("venue"),
           "venue `venue` (of config.venues) stops answering: no order goes there, its working orders stay working")
      .def("reconnect_venue", &Executor::reconnect_venue, py::arg("venue"), py::arg("now_ns"),
           "it answers again: its fills meanwhile are applied, the rest of its working orders cancelled")
      .def(
          "venue_connected",
          [](const Executor& ex, std::uint16_t v) { return ex.router() != nullptr && ex.router()->connected(v); },
          py::arg("venue"))
      .def(
          "venue_working_notional",
          [](const Executor& ex, std::uint16_t v) {
            const VenueRouter* r = ex.router();
            return r != nullptr && v < r->venues() ? static_cast<double>(r->working_notional(v)) * kUnitsPerTick : 0.0;
          },
          py::arg("venue"), "currency units of the orders working at the venue")
      .def("set_daily_loss_limit", &Executor::set_daily_loss_limit, py::arg("limit"),
           "the day's loss (currency units) that halts for the day, from the next decision on")
      .def("halt", &Executor::halt, "kill switch: takes effect before the next decision")
      .def("resume", &Executor::resume, py::arg("now_ns"))
      .def_property_readonly("halted", &Executor::halted)
      .def_property_readonly("halt_reason", [](const Executor& ex) { return reason_name(ex.halt_reason()); })
      .def("position", &Executor::position)
      .def("working", &Executor::working)
      .def("last_price", &Executor::last_price)
      .def("signal", &Executor::signal)
      .def("open_orders", &Executor::open_orders)
      .def_property_readonly("instruments", &Executor::instruments)
      .def_property_readonly("cash", &Executor::cash)
      .def_property_readonly("equity", &Executor::equity)
      .def_property_readonly("day_pnl", &Executor::day_pnl)
      .def_property_readonly("fees", &Executor::fees)
      .def_property_readonly("gross", &Executor::gross)
      .def_property_readonly("next_order_id", &Executor::next_order_id)
      .def("counters", [](const Executor& ex) {
        const Counters& c = ex.counters();
        py::dict by_reason;
        for (int r = 1; r < static_cast<int>(Reason::Count); ++r)
          by_reason[reason_name(static_cast<Reason>(r))] = c.by_reason[static_cast<std::size_t>(r)];
        py::dict d;
        d["predictions"] = c.predictions;
        d["orders"] = c.orders;
        d["fills"] = c.fills;
        d["rejections"] = c.rejections;
        d["by_reason"] = by_reason;
        return d;
      });

  m.def("next_signal", [](int current, double p, const StrategyConfig& c) {
    return static_cast<int>(next_signal(static_cast<std::int8_t>(current), p, c));
  });
  m.def("order_quantity", &order_quantity, py::arg("current"), py::arg("target"), py::arg("config"));
  m.def("target_size", &target_size, py::arg("price_ticks"), py::arg("volatility"), py::arg("config"),
        py::arg("max_position"));
}
