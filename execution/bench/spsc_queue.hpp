// A bounded, lock-free, single-producer single-consumer queue (after rigtorp/SPSCQueue).
//
// One thread calls try_push, one other thread calls try_pop; neither ever blocks or allocates after
// construction. The capacity is a power of two so a slot index is a mask of a 64-bit counter (the counters
// never wrap in practice). The producer's index and the consumer's index live on separate cache lines, each
// next to the owning thread's cached copy of the other index, so a thread touches the other's line only when
// its cached view says the queue is full (producer) or empty (consumer).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <type_traits>

namespace hft_exec {

template <typename T>
class SpscQueue {
  static_assert(std::is_trivially_copyable_v<T> && std::is_default_constructible_v<T>,
                "slots hold fixed-layout records, copied in and out");

 public:
  static constexpr std::size_t kCacheLine = 64;

  // `capacity`: a power of two >= 2; all slots are allocated here, never later.
  explicit SpscQueue(std::size_t capacity) : mask_(capacity - 1), slots_(std::make_unique<Slot[]>(capacity)) {
    if (capacity < 2 || (capacity & (capacity - 1)) != 0)
      throw std::invalid_argument("SpscQueue capacity must be a power of two >= 2");
  }
  SpscQueue(const SpscQueue&) = delete;
  SpscQueue& operator=(const SpscQueue&) = delete;

  // Producer only. Returns false (and copies nothing) when the queue is full.
  [[nodiscard]] bool try_push(const T& value) noexcept {
    const std::uint64_t tail = tail_.load(std::memory_order_relaxed);  // relaxed: only this thread writes tail_
    if (tail - head_cache_ > mask_) {
      head_cache_ = head_.load(std::memory_order_acquire);  // acquire: the consumer's read of the slot we reuse is done
      if (tail - head_cache_ > mask_) return false;
    }
    slots_[tail & mask_].value = value;
    tail_.store(tail + 1, std::memory_order_release);  // release: publishes the slot write to the consumer's acquire
    return true;
  }

  // Consumer only. Returns false (and leaves `out` alone) when the queue is empty.
  [[nodiscard]] bool try_pop(T& out) noexcept {
    const std::uint64_t head = head_.load(std::memory_order_relaxed);  // relaxed: only this thread writes head_
    if (head == tail_cache_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);  // acquire: pairs with try_push's release, slot is written
      if (head == tail_cache_) return false;
    }
    out = slots_[head & mask_].value;
    head_.store(head + 1, std::memory_order_release);  // release: our slot read completes before the producer reuses it
    return true;
  }

  // Approximate from any thread (exact from the consumer): both loads are independent snapshots.
  [[nodiscard]] std::size_t size_approx() const noexcept {
    const std::uint64_t tail = tail_.load(std::memory_order_acquire);  // acquire: a snapshot no older than a seen pop
    const std::uint64_t head = head_.load(std::memory_order_acquire);  // acquire: as above, for the consumer's index
    return tail > head ? static_cast<std::size_t>(tail - head) : 0;
  }
  [[nodiscard]] bool empty_approx() const noexcept { return size_approx() == 0; }
  [[nodiscard]] std::size_t capacity() const noexcept { return mask_ + 1; }

 private:
  struct alignas(kCacheLine) Slot {  // a slot per line: neighbouring slots never false-share
    T value{};
  };

  // Read-only after construction: shared by both threads without contention.
  alignas(kCacheLine) const std::uint64_t mask_;
  const std::unique_ptr<Slot[]> slots_;
  // The producer's line: its index and its cached view of the consumer's.
  alignas(kCacheLine) std::atomic<std::uint64_t> tail_{0};
  std::uint64_t head_cache_ = 0;
  // The consumer's line: its index and its cached view of the producer's.
  alignas(kCacheLine) std::atomic<std::uint64_t> head_{0};
  std::uint64_t tail_cache_ = 0;
  // The class is cache-line aligned, so its size is whole lines: nothing that follows shares the last one.
};

}  // namespace hft_exec
