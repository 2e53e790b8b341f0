// The op profile: an opt-in timer of every op a backend runs, accumulated per op name (the
// addon's profile('start' | 'stop' | 'read')). A backend wraps an op's work in timed() when it
// enqueues it; when the profile is off that costs one relaxed load per op. The CPU backend
// times each op on its stream's worker, around the op's kernels (so not the queueing, nor the
// time the worker waits for work). Header-only, like order_hooks.h.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace sg::profile {

struct OpTime {
  std::string op;
  int64_t calls = 0;
  double seconds = 0;
};

inline std::atomic<bool> gOn{false};
inline std::mutex gMutex;
inline std::map<std::string, OpTime> gTimes;  // under gMutex

inline bool on() { return gOn.load(std::memory_order_relaxed); }

// Adds one call of `op` that took `seconds`, unless the profile was stopped meanwhile.
inline void record(const char* op, double seconds) {
  std::lock_guard<std::mutex> lock(gMutex);
  if (!on()) return;
  OpTime& t = gTimes[op];
  t.op = op;
  ++t.calls;
  t.seconds += seconds;
}

// Forgets what was recorded and starts recording.
inline void start() {
  std::lock_guard<std::mutex> lock(gMutex);
  gTimes.clear();
  gOn.store(true, std::memory_order_relaxed);
}

inline void stop() { gOn.store(false, std::memory_order_relaxed); }

// The totals so far, by op name.
inline std::vector<OpTime> read() {
  std::lock_guard<std::mutex> lock(gMutex);
  std::vector<OpTime> out;
  for (auto& entry : gTimes) out.push_back(entry.second);
  return out;
}

// `body`, timed under `op` when it runs (`op` must outlive it: a string literal or __func__).
template <class Body>
auto timed(const char* op, Body body) {
  return [op, body = std::move(body)]() mutable {
    const auto t0 = std::chrono::steady_clock::now();
    body();
    record(op, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  };
}

}  // namespace sg::profile
