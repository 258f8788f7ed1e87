// Latency benchmark of the executor's decision path: prediction in -> validation, strategy, risk checks,
// order out (and fills of earlier orders) in Executor::on_prediction, against an empty SPSC-queue hop timed
// with the same clock in the same run.
//
//   cmake -S execution -B build/execution-bench -G Ninja -DCMAKE_BUILD_TYPE=Release
//   cmake --build build/execution-bench --target hft_exec_bench -j2
//   build/execution-bench/hft_exec_bench [--events 10000000] [--instruments 100] [--repeat 3] [--json PATH]
// (bench/execution.py builds and runs it; without CMake: g++ -O3 -DNDEBUG -std=c++20 -Iexecution/include
//  execution/bench/latency.cpp execution/src/*.cpp -o hft_exec_bench -pthread)
//
// Measured, each --repeat times with a fresh executor (best and median over the repeats are reported):
//  * baselines: one same-thread try_push + try_pop of a Prediction through SpscQueue, and the one-way hop of a
//    timestamp from a producer thread to a spinning consumer thread (paced: one message in flight at a time);
//  * decision: every on_prediction call of a stream of --events predictions over --instruments instruments
//    (1-minute bars, random-walk prices, AR(1) probabilities around 0.5 that flip the signal often, noisy
//    volatility that moves the target size), timed one by one; the outbox is cleared every kDrainEvery
//    events outside the timed region, and the next prediction is generated outside it too;
//  * heap allocations during the timed loop: global operator new/delete are replaced below by counting
//    versions (the count must be 0);
//  * batched: Executor::on_predictions over a pre-generated array in chunks of kBatch (outbox drained per
//    chunk), and once as a single call over the whole array with the outbox drained only after it (which
//    shows whether the outbox grows, i.e. allocates, on the decision path).
// Clock: rdtsc (lfence-fenced start, rdtscp end) calibrated against std::chrono::steady_clock; the median
// cost of an empty timed region is subtracted from every sample (and printed). Other targets:
// std::chrono::steady_clock.
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "hft_exec/executor.hpp"
#include "spsc_queue.hpp"  // beside this benchmark, its only user

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HFT_BENCH_TSC 1
#endif

// ------------------------------------------------------------------------------ allocation counting
namespace {
std::atomic<std::uint64_t> g_allocations{0};
std::atomic<std::uint64_t> g_allocated_bytes{0};
std::atomic<std::uint64_t> g_frees{0};

void* counted(std::size_t n, std::size_t align) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);      // relaxed: a statistic, read after joins only
  g_allocated_bytes.fetch_add(n, std::memory_order_relaxed);  // relaxed: as above
  if (n == 0) n = 1;
  void* p =
      align <= alignof(std::max_align_t) ? std::malloc(n) : std::aligned_alloc(align, (n + align - 1) / align * align);
  return p;
}
void release(void* p) noexcept {
  if (p == nullptr) return;
  g_frees.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
  std::free(p);
}
}  // namespace

void* operator new(std::size_t n) {
  if (void* p = counted(n, 0)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = counted(n, 0)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a) {
  if (void* p = counted(n, static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
  if (void* p = counted(n, static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted(n, 0); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t) noexcept { release(p); }
void operator delete(void* p, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }

namespace {

using namespace hft_exec;
using Clock = std::chrono::steady_clock;

// ------------------------------------------------------------------------------------------- clock
inline void compiler_barrier() noexcept { asm volatile("" ::: "memory"); }

#ifdef HFT_BENCH_TSC
inline std::uint64_t tick_begin() noexcept {
  _mm_lfence();  // earlier instructions finish before the read
  const std::uint64_t t = __rdtsc();
  _mm_lfence();  // the timed code starts after it
  return t;
}
inline std::uint64_t tick_end() noexcept {
  unsigned aux;
  const std::uint64_t t = __rdtscp(&aux);  // waits for the timed code to finish
  _mm_lfence();
  return t;
}
const char* const kClockName = "rdtsc (lfence/rdtscp), calibrated against steady_clock";
#else
inline std::uint64_t tick_begin() noexcept {
  return static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
}
inline std::uint64_t tick_end() noexcept { return tick_begin(); }
const char* const kClockName = "std::chrono::steady_clock";
#endif

// Ticks per nanosecond, over a busy 200 ms of steady_clock.
double calibrate_ticks_per_ns() {
#ifdef HFT_BENCH_TSC
  const auto c0 = Clock::now();
  const std::uint64_t t0 = tick_begin();
  while (Clock::now() - c0 < std::chrono::milliseconds(200)) {
  }
  const std::uint64_t t1 = tick_end();
  const auto c1 = Clock::now();
  return static_cast<double>(t1 - t0) /
         static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(c1 - c0).count());
#else
  return 1.0;
#endif
}

void pin_to_cpu(unsigned cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % std::max(1u, std::thread::hardware_concurrency()), &set);
  (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);  // best effort: unpinned still measures
}

// ------------------------------------------------------------------------------------- statistics
struct Percentiles {
  double p50 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;
  std::size_t n = 0;
};

// Percentiles in ns of tick samples, less `overhead_ticks` each (floored at 0). Reorders `ticks`.
Percentiles percentiles(std::vector<std::uint32_t>& ticks, double ticks_per_ns, double overhead_ticks) {
  Percentiles r;
  r.n = ticks.size();
  if (ticks.empty()) return r;
  auto at = [&](double q) {
    const auto k = static_cast<std::size_t>(
        std::min<double>(q * static_cast<double>(ticks.size()), static_cast<double>(ticks.size() - 1)));
    std::nth_element(ticks.begin(), ticks.begin() + static_cast<std::ptrdiff_t>(k), ticks.end());
    return std::max(0.0, static_cast<double>(ticks[k]) - overhead_ticks) / ticks_per_ns;
  };
  r.p50 = at(0.50);
  r.p99 = at(0.99);
  r.p999 = at(0.999);
  r.max =
      std::max(0.0, static_cast<double>(*std::max_element(ticks.begin(), ticks.end())) - overhead_ticks) / ticks_per_ns;
  double sum = 0;
  for (std::uint32_t t : ticks) sum += static_cast<double>(t);
  r.mean = std::max(0.0, sum / static_cast<double>(ticks.size()) - overhead_ticks) / ticks_per_ns;
  return r;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

// Best (smallest) and median over repeats of each percentile.
struct Summary {
  Percentiles best, median;
  std::vector<Percentiles> runs;
};
Summary summarize(const std::vector<Percentiles>& runs) {
  Summary s;
  s.runs = runs;
  auto field = [&](double Percentiles::*f) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r.*f);
    return v;
  };
  for (double Percentiles::*f :
       {&Percentiles::p50, &Percentiles::p99, &Percentiles::p999, &Percentiles::max, &Percentiles::mean}) {
    const auto v = field(f);
    s.best.*f = v.empty() ? 0.0 : *std::min_element(v.begin(), v.end());
    s.median.*f = median_of(v);
  }
  s.best.n = s.median.n = runs.empty() ? 0 : runs.front().n;
  return s;
}

// ------------------------------------------------------------------------------------------- input
// A stream of 1-minute bars over `instruments` instruments, one prediction per instrument per bar, in
// time order. Probabilities: AR(1) around 0.5 (phi 0.5, sd 0.08) so the signal (0.55/0.45 entry, 0.52/0.48
// exit) changes on a good share of bars; volatility: a per-instrument level times noise (sd 20%), so the
// target size moves past the 25% rebalance band now and then; prices: a geometric random walk.
class PredictionStream {
 public:
  PredictionStream(std::uint32_t instruments, std::uint64_t seed) : n_(instruments), rng_(seed), state_(instruments) {
    std::uniform_real_distribution<double> price(20.0, 500.0), vol(0.0005, 0.002);
    for (auto& s : state_) s = State{price(rng_), vol(rng_), 0.0};
  }

  Prediction next() noexcept {
    const std::uint32_t i = static_cast<std::uint32_t>(k_ % n_);
    const std::int64_t bar = static_cast<std::int64_t>(k_ / n_);
    ++k_;
    State& s = state_[i];
    s.x = 0.5 * s.x + 0.0693 * normal_(rng_);  // stationary sd 0.08
    s.price *= std::exp(s.vol * normal_(rng_));
    const double vol = s.vol * std::exp(0.2 * normal_(rng_));
    const Nanos ts = kStart + bar * 60'000'000'000;
    const Nanos recv = ts + 50'000'000 + static_cast<Nanos>(i) * 1'000;  // 50 ms after the bar, then per instrument
    return Prediction{ts, recv, i, 0, std::clamp(0.5 + s.x, 0.0, 1.0), s.price, vol};
  }

 private:
  struct State {
    double price, vol, x;
  };
  static constexpr Nanos kStart = 1'704'205'800'000'000'000;  // 2024-01-02 14:30 UTC
  std::uint32_t n_;
  std::uint64_t k_ = 0;
  std::mt19937_64 rng_;
  std::normal_distribution<double> normal_{0.0, 1.0};
  std::vector<State> state_;
};

// Loose limits: every risk rule is evaluated on every order, but (almost) none binds, so the measured path
// is the order-producing one. Strategy and exchange settings are the defaults.
ExecutorConfig bench_config() {
  ExecutorConfig c;
  c.risk.max_position = 100'000;
  c.risk.max_gross_notional = 1e12;
  c.risk.max_order_notional = 1e10;
  c.risk.orders_per_second = 1e9;
  c.risk.order_burst = 1e9;
  c.risk.daily_loss_limit = 1e12;
  return c;
}

constexpr std::size_t kDrainEvery = 1024;  // outbox events: cleared (untimed) when it reaches this
constexpr std::size_t kBatch = 1024;       // predictions per on_predictions call in the batched figure

// --------------------------------------------------------------------------------------- options
struct Options {
  std::uint64_t events = 10'000'000;
  std::uint32_t instruments = 100;
  std::uint64_t warmup = 200'000;
  std::uint64_t hop_samples = 1'000'000;
  std::uint64_t batch_events = 1'000'000;
  int repeat = 3;
  std::uint64_t seed = 7;
  std::string json;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int k = 1; k < argc; ++k) {
    const std::string a = argv[k];
    auto value = [&]() -> std::string {
      if (k + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++k];
    };
    if (a == "--events")
      o.events = static_cast<std::uint64_t>(std::stod(value()));
    else if (a == "--instruments")
      o.instruments = static_cast<std::uint32_t>(std::stoul(value()));
    else if (a == "--warmup")
      o.warmup = static_cast<std::uint64_t>(std::stod(value()));
    else if (a == "--hop-samples")
      o.hop_samples = static_cast<std::uint64_t>(std::stod(value()));
    else if (a == "--batch-events")
      o.batch_events = static_cast<std::uint64_t>(std::stod(value()));
    else if (a == "--repeat")
      o.repeat = std::max(1, std::stoi(value()));
    else if (a == "--seed")
      o.seed = std::stoull(value());
    else if (a == "--json")
      o.json = value();
    else {
      std::fprintf(stderr,
                   "usage: hft_exec_bench [--events N] [--instruments N] [--warmup N] [--hop-samples N]\n"
                   "                      [--batch-events N] [--repeat R] [--seed S] [--json PATH]\n");
      std::exit(a == "--help" || a == "-h" ? 0 : 2);
    }
  }
  return o;
}

// ------------------------------------------------------------------------------------ measurements
struct Timer {
  double ticks_per_ns;
  double overhead_ticks;  // median of an empty timed region
  Percentiles overhead;   // in ns, not subtracted
  double step_ns;         // the smallest difference between two distinct empty-region readings: the resolution
};

Timer measure_timer() {
  Timer t{calibrate_ticks_per_ns(), 0, {}, 0};
  std::vector<std::uint32_t> s(1'000'000);
  for (auto& x : s) {
    const std::uint64_t t0 = tick_begin();
    compiler_barrier();
    const std::uint64_t t1 = tick_end();
    x = static_cast<std::uint32_t>(t1 - t0);
  }
  std::vector<std::uint32_t> distinct(s);
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::uint32_t step = distinct.size() > 1 ? UINT32_MAX : 1;
  for (std::size_t k = 1; k < distinct.size(); ++k) step = std::min(step, distinct[k] - distinct[k - 1]);
  t.step_ns = step / t.ticks_per_ns;
  t.overhead = percentiles(s, t.ticks_per_ns, 0.0);
  t.overhead_ticks = t.overhead.p50 * t.ticks_per_ns;
  return t;
}

// One same-thread try_push + try_pop of a Prediction (the executor's input record).
Percentiles spsc_same_thread(const Timer& timer, std::uint64_t samples) {
  SpscQueue<Prediction> q(1024);
  std::vector<std::uint32_t> s(samples);
  Prediction in{1, 2, 3, 0, 0.5, 100.0, 0.001}, out{};
  std::uint64_t sum = 0;
  for (std::uint64_t k = 0; k < samples; ++k) {
    in.ts_ns = static_cast<Nanos>(k);
    compiler_barrier();
    const std::uint64_t t0 = tick_begin();
    const bool pushed = q.try_push(in);
    const bool popped = q.try_pop(out);
    const std::uint64_t t1 = tick_end();
    compiler_barrier();
    s[k] = static_cast<std::uint32_t>(t1 - t0);
    sum += static_cast<std::uint64_t>(out.ts_ns) + pushed + popped;
  }
  if (sum == 0) std::fprintf(stderr, "(unreachable)\n");
  return percentiles(s, timer.ticks_per_ns, timer.overhead_ticks);
}

// One-way hop producer thread -> consumer thread: the producer stamps a message and pushes it; the
// consumer spins on try_pop and timestamps the arrival. One message in flight (the producer waits for the
// consumer's acknowledgement), so this is the empty queue's latency, not queueing delay. Cross-core rdtsc
// assumes an invariant, synchronized TSC (constant_tsc / nonstop_tsc).
Percentiles spsc_hop(const Timer& timer, std::uint64_t samples) {
  struct Stamp {
    std::uint64_t tick, seq;
  };
  SpscQueue<Stamp> q(1024);
  struct alignas(64) Ack {
    std::atomic<std::uint64_t> n{0};
  } ack;
  std::vector<std::uint32_t> s(samples);
  std::thread producer([&] {
    pin_to_cpu(1);
    for (std::uint64_t k = 0; k < samples; ++k) {
      while (ack.n.load(std::memory_order_acquire) < k) {  // acquire: the consumer is done with message k-1
      }
      const Stamp m{tick_begin(), k};
      while (!q.try_push(m)) {
      }
    }
  });
  pin_to_cpu(0);
  for (std::uint64_t k = 0; k < samples; ++k) {
    Stamp m{};
    while (!q.try_pop(m)) {
    }
    const std::uint64_t t1 = tick_end();
    s[k] = static_cast<std::uint32_t>(std::min<std::uint64_t>(t1 > m.tick ? t1 - m.tick : 0, UINT32_MAX));
    ack.n.store(k + 1, std::memory_order_release);  // release: message k is consumed before the next is stamped
  }
  producer.join();
  return percentiles(s, timer.ticks_per_ns, timer.overhead_ticks);
}

struct DecisionRun {
  Percentiles latency;
  std::uint64_t events = 0, orders = 0, holds = 0, rejects = 0, fills = 0, outbox_events = 0;
  std::uint64_t allocations = 0, allocated_bytes = 0, frees = 0;
  std::array<std::uint64_t, static_cast<std::size_t>(Reason::Count)> by_reason{};
};

DecisionRun decision_latency(const Options& o, const Timer& timer) {
  DecisionRun r;
  Executor ex(bench_config(), o.instruments);
  PredictionStream stream(o.instruments, o.seed);
  std::vector<std::uint32_t> s(o.events);
  for (std::uint64_t k = 0; k < o.warmup; ++k) {
    const Prediction p = stream.next();
    (void)ex.on_prediction(p);
    if (ex.events().size() >= kDrainEvery) ex.clear_events();
  }
  ex.clear_events();
  const Counters before = ex.counters();
  pin_to_cpu(0);
  const std::uint64_t a0 = g_allocations.load(std::memory_order_relaxed);  // relaxed: single-threaded here
  const std::uint64_t b0 = g_allocated_bytes.load(std::memory_order_relaxed);
  const std::uint64_t f0 = g_frees.load(std::memory_order_relaxed);
  for (std::uint64_t k = 0; k < o.events; ++k) {
    const Prediction p = stream.next();
    compiler_barrier();  // p is in memory before the clock starts
    const std::uint64_t t0 = tick_begin();
    const Decision d = ex.on_prediction(p);
    const std::uint64_t t1 = tick_end();
    compiler_barrier();
    s[k] = static_cast<std::uint32_t>(std::min<std::uint64_t>(t1 - t0, UINT32_MAX));
    r.orders += d.action == Action::Order;
    r.rejects += d.action == Action::Reject;
    if (ex.events().size() >= kDrainEvery) {
      r.outbox_events += ex.events().size();
      ex.clear_events();
    }
  }
  r.allocations = g_allocations.load(std::memory_order_relaxed) - a0;
  r.allocated_bytes = g_allocated_bytes.load(std::memory_order_relaxed) - b0;
  r.frees = g_frees.load(std::memory_order_relaxed) - f0;
  r.outbox_events += ex.events().size();
  r.events = o.events;
  r.holds = r.events - r.orders - r.rejects;
  const Counters& c = ex.counters();
  r.fills = c.fills - before.fills;
  for (std::size_t k = 0; k < r.by_reason.size(); ++k) r.by_reason[k] = c.by_reason[k] - before.by_reason[k];
  r.latency = percentiles(s, timer.ticks_per_ns, timer.overhead_ticks);
  return r;
}

struct BatchRun {
  double chunked_ns_per_event = 0;  // on_predictions in chunks of kBatch, outbox drained after each
  double single_ns_per_event = 0;   // one on_predictions call over everything, outbox drained after it
  std::uint64_t chunked_allocations = 0, single_allocations = 0, single_allocated_bytes = 0;
  std::uint64_t single_outbox_events = 0;
};

BatchRun batched(const Options& o) {
  BatchRun r;
  std::vector<Prediction> in(o.batch_events);
  std::vector<Decision> out(o.batch_events);
  {
    PredictionStream stream(o.instruments, o.seed);
    for (auto& p : in) p = stream.next();
  }
  {
    Executor ex(bench_config(), o.instruments);
    const std::uint64_t a0 = g_allocations.load(std::memory_order_relaxed);  // relaxed: single-threaded here
    const auto c0 = Clock::now();
    for (std::size_t k = 0; k < in.size(); k += kBatch) {
      const std::size_t n = std::min(kBatch, in.size() - k);
      ex.on_predictions({in.data() + k, n}, {out.data() + k, n});
      ex.clear_events();
    }
    const auto c1 = Clock::now();
    r.chunked_allocations = g_allocations.load(std::memory_order_relaxed) - a0;
    r.chunked_ns_per_event =
        static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(c1 - c0).count()) /
        static_cast<double>(in.size());
  }
  {
    Executor ex(bench_config(), o.instruments);
    const std::uint64_t a0 = g_allocations.load(std::memory_order_relaxed);  // relaxed: single-threaded here
    const std::uint64_t b0 = g_allocated_bytes.load(std::memory_order_relaxed);
    const auto c0 = Clock::now();
    ex.on_predictions(in, out);
    const auto c1 = Clock::now();
    r.single_allocations = g_allocations.load(std::memory_order_relaxed) - a0;
    r.single_allocated_bytes = g_allocated_bytes.load(std::memory_order_relaxed) - b0;
    r.single_outbox_events = ex.events().size();
    ex.clear_events();
    r.single_ns_per_event = static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(c1 - c0).count()) /
                            static_cast<double>(in.size());
  }
  return r;
}

// ------------------------------------------------------------------------------------------ report
constexpr double kTargetP50 = 100.0, kTargetP99 = 500.0;
constexpr std::uint64_t kTargetEvents = 10'000'000;

const char* pass(bool ok) { return ok ? "PASS" : "MISS"; }

void row(const char* name, const Summary& s) {
  std::printf("%-34s%9.1f%9.1f%10.1f%11.1f%9.1f%12zu   (median of repeats: p50 %.1f, p99 %.1f, p99.9 %.1f)\n", name,
              s.best.p50, s.best.p99, s.best.p999, s.best.max, s.best.mean, s.best.n, s.median.p50, s.median.p99,
              s.median.p999);
}

void json_percentiles(std::FILE* f, const char* name, const Summary& s, bool comma) {
  auto one = [&](const Percentiles& p) {
    std::fprintf(
        f, "{\"p50_ns\": %.2f, \"p99_ns\": %.2f, \"p999_ns\": %.2f, \"max_ns\": %.2f, \"mean_ns\": %.2f, \"n\": %zu}",
        p.p50, p.p99, p.p999, p.max, p.mean, p.n);
  };
  std::fprintf(f, "  \"%s\": {\"best\": ", name);
  one(s.best);
  std::fprintf(f, ", \"median\": ");
  one(s.median);
  std::fprintf(f, ", \"runs\": [");
  for (std::size_t k = 0; k < s.runs.size(); ++k) {
    if (k) std::fprintf(f, ", ");
    one(s.runs[k]);
  }
  std::fprintf(f, "]}%s\n", comma ? "," : "");
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const ExecutorConfig config = bench_config();
  const Timer timer = measure_timer();

  std::vector<Percentiles> same, hop, decision;
  std::vector<DecisionRun> runs;
  std::vector<BatchRun> batches;
  const bool two_cpus = std::thread::hardware_concurrency() >= 2;
  for (int r = 0; r < o.repeat; ++r) {
    same.push_back(spsc_same_thread(timer, o.hop_samples));
    if (two_cpus) hop.push_back(spsc_hop(timer, o.hop_samples));
    runs.push_back(decision_latency(o, timer));
    decision.push_back(runs.back().latency);
    batches.push_back(batched(o));
  }
  const Summary s_same = summarize(same), s_hop = summarize(hop), s_dec = summarize(decision);
  std::vector<double> chunked, single;
  std::uint64_t allocations = 0, allocated_bytes = 0, frees = 0;
  for (const auto& b : batches) {
    chunked.push_back(b.chunked_ns_per_event);
    single.push_back(b.single_ns_per_event);
  }
  for (const auto& d : runs) {
    allocations = std::max(allocations, d.allocations);
    allocated_bytes = std::max(allocated_bytes, d.allocated_bytes);
    frees = std::max(frees, d.frees);
  }
  const DecisionRun& d0 = runs.front();
  const BatchRun& b0 = batches.front();
  const double best_chunked = *std::min_element(chunked.begin(), chunked.end());
  const double best_single = *std::min_element(single.begin(), single.end());

  std::printf("Executor decision latency (hft_exec_bench)\n");
  std::printf(
      "clock: %s, %.3f ticks/ns, readings in steps of ~%.1f ns here; empty timed region p50 %.1f ns "
      "(subtracted from every sample), p99 %.1f ns\n",
      kClockName, timer.ticks_per_ns, timer.step_ns, timer.overhead.p50, timer.overhead.p99);
  std::printf(
      "stream: %llu timed predictions (+%llu warm-up) over %u instruments, 1-minute bars; repeats: %d "
      "(fresh executor each); outbox cleared every %zu events (untimed)\n",
      static_cast<unsigned long long>(o.events), static_cast<unsigned long long>(o.warmup), o.instruments, o.repeat,
      kDrainEvery);
  std::printf(
      "config: strategy/exchange defaults (enter 0.55/0.45, exit 0.52/0.48, risk_per_trade %.0f, latency %lld ns); "
      "risk: max_position %lld, max_order_notional %.0e, max_gross_notional %.0e, orders_per_second %.0e, "
      "order_burst %.0e, daily_loss_limit %.0e, price_band %.2f, max_open_orders %u\n",
      config.strategy.risk_per_trade, static_cast<long long>(config.exchange.latency_ns),
      static_cast<long long>(config.risk.max_position), config.risk.max_order_notional, config.risk.max_gross_notional,
      config.risk.orders_per_second, config.risk.order_burst, config.risk.daily_loss_limit, config.risk.price_band,
      config.risk.max_open_orders);
  const double n = static_cast<double>(d0.events);
  std::printf(
      "decisions (repeat 1): orders %.1f%%, holds %.1f%%, rejects %.1f%%; fills %llu; outbox events %llu (%.2f per "
      "prediction)\n",
      100.0 * static_cast<double>(d0.orders) / n, 100.0 * static_cast<double>(d0.holds) / n,
      100.0 * static_cast<double>(d0.rejects) / n, static_cast<unsigned long long>(d0.fills),
      static_cast<unsigned long long>(d0.outbox_events), static_cast<double>(d0.outbox_events) / n);
  for (std::size_t k = 1; k < d0.by_reason.size(); ++k)
    if (d0.by_reason[k])
      std::printf("  rejected %-22s %llu\n", reason_name(static_cast<Reason>(k)),
                  static_cast<unsigned long long>(d0.by_reason[k]));
  std::printf("\n%-34s%9s%9s%10s%11s%9s%12s\n", "best of repeats, ns", "p50", "p99", "p99.9", "max", "mean", "samples");
  std::printf("%s\n", std::string(84, '-').c_str());
  row("spsc try_push+try_pop (1 thread)", s_same);
  if (two_cpus) row("spsc hop (2 threads, one-way)", s_hop);
  row("Executor::on_prediction", s_dec);
  std::printf("\nratios (best p50 / p99): on_prediction vs spsc push+pop %.1fx / %.1fx",
              s_dec.best.p50 / std::max(s_same.best.p50, 0.1), s_dec.best.p99 / std::max(s_same.best.p99, 0.1));
  if (two_cpus)
    std::printf("; vs spsc hop %.2fx / %.2fx", s_dec.best.p50 / std::max(s_hop.best.p50, 0.1),
                s_dec.best.p99 / std::max(s_hop.best.p99, 0.1));
  std::printf("\nheap allocations during the timed loops: %llu (%llu bytes, %llu frees), worst repeat\n",
              static_cast<unsigned long long>(allocations), static_cast<unsigned long long>(allocated_bytes),
              static_cast<unsigned long long>(frees));
  std::printf(
      "batched on_predictions over %llu predictions: chunks of %zu + drain %.1f ns/event (best; %.2fM events/s), "
      "%llu allocations; one call %.1f ns/event (best), %llu allocations (%llu bytes) with %llu events left in the "
      "outbox\n",
      static_cast<unsigned long long>(o.batch_events), kBatch, best_chunked, 1e3 / best_chunked,
      static_cast<unsigned long long>(b0.chunked_allocations), best_single,
      static_cast<unsigned long long>(b0.single_allocations),
      static_cast<unsigned long long>(b0.single_allocated_bytes),
      static_cast<unsigned long long>(b0.single_outbox_events));
  const bool ok_p50 = s_dec.best.p50 <= kTargetP50, ok_p99 = s_dec.best.p99 <= kTargetP99;
  const bool ok_n = o.events >= kTargetEvents, ok_alloc = allocations == 0;
  std::printf("\ntarget p50 <= %.0f ns: %.1f ns (median of repeats %.1f) -> %s\n", kTargetP50, s_dec.best.p50,
              s_dec.median.p50, pass(ok_p50));
  std::printf("target p99 <= %.0f ns: %.1f ns (median of repeats %.1f) -> %s\n", kTargetP99, s_dec.best.p99,
              s_dec.median.p99, pass(ok_p99));
  std::printf("target >= %llu events: %llu -> %s\n", static_cast<unsigned long long>(kTargetEvents),
              static_cast<unsigned long long>(o.events), pass(ok_n));
  std::printf("target zero heap allocations on the hot path: %llu -> %s\n",
              static_cast<unsigned long long>(allocations), pass(ok_alloc));

  if (!o.json.empty()) {
    std::FILE* f = std::fopen(o.json.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", o.json.c_str());
      return 1;
    }
    std::fprintf(f,
                 "{\n  \"clock\": \"%s\",\n  \"ticks_per_ns\": %.6f,\n  \"timer_overhead_p50_ns\": %.2f,\n  "
                 "\"timer_step_ns\": %.2f,\n",
                 kClockName, timer.ticks_per_ns, timer.overhead.p50, timer.step_ns);
    std::fprintf(f, "  \"events\": %llu,\n  \"instruments\": %u,\n  \"repeat\": %d,\n",
                 static_cast<unsigned long long>(o.events), o.instruments, o.repeat);
    std::fprintf(f, "  \"order_share\": %.6f,\n  \"reject_share\": %.6f,\n  \"fills\": %llu,\n",
                 static_cast<double>(d0.orders) / n, static_cast<double>(d0.rejects) / n,
                 static_cast<unsigned long long>(d0.fills));
    std::fprintf(f, "  \"allocations\": %llu,\n  \"allocated_bytes\": %llu,\n",
                 static_cast<unsigned long long>(allocations), static_cast<unsigned long long>(allocated_bytes));
    json_percentiles(f, "spsc_same_thread", s_same, true);
    if (two_cpus) json_percentiles(f, "spsc_hop", s_hop, true);
    json_percentiles(f, "on_prediction", s_dec, true);
    std::fprintf(f,
                 "  \"batched\": {\"batch\": %zu, \"events\": %llu, \"chunked_ns_per_event_best\": %.3f, "
                 "\"chunked_ns_per_event_median\": %.3f, \"single_call_ns_per_event_best\": %.3f, "
                 "\"single_call_ns_per_event_median\": %.3f, \"chunked_allocations\": %llu, "
                 "\"single_call_allocations\": %llu, \"single_call_allocated_bytes\": %llu, "
                 "\"single_call_outbox_events\": %llu},\n",
                 kBatch, static_cast<unsigned long long>(o.batch_events), best_chunked, median_of(chunked), best_single,
                 median_of(single), static_cast<unsigned long long>(b0.chunked_allocations),
                 static_cast<unsigned long long>(b0.single_allocations),
                 static_cast<unsigned long long>(b0.single_allocated_bytes),
                 static_cast<unsigned long long>(b0.single_outbox_events));
    std::fprintf(f,
                 "  \"targets\": {\"p50_ns\": %.0f, \"p99_ns\": %.0f, \"events\": %llu, \"p50_pass\": %s, "
                 "\"p99_pass\": %s, \"events_pass\": %s, \"allocations_pass\": %s}\n}\n",
                 kTargetP50, kTargetP99, static_cast<unsigned long long>(kTargetEvents), ok_p50 ? "true" : "false",
                 ok_p99 ? "true" : "false", ok_n ? "true" : "false", ok_alloc ? "true" : "false");
    std::fclose(f);
  }
  return 0;
}
