// The part of the stream-order checker (stream_order.h) that the core classes' destructors
// need: whether it is on, and how to tell it that an object is gone. Header-only, so that code
// compiled without stream_order.cpp (the CUDA host emulation) still links: there the checker
// is never switched on, and the destructors pay one relaxed load.
#pragma once
#include <atomic>

namespace sg::order {

enum class Gone { Storage, Stream, Event, Graph };

// Set by stream_order.cpp only (setChecking), the hook before the flag.
inline std::atomic<bool> gChecking{false};
inline std::atomic<void (*)(Gone, const void*)> gGoneHook{nullptr};

// One branch on every op and destructor when the checker is off.
inline bool checking() { return gChecking.load(std::memory_order_relaxed); }

// Forgets what the checker knows about `object` (its address may be reused from now on).
inline void gone(Gone kind, const void* object) {
  if (auto hook = gGoneHook.load(std::memory_order_acquire)) hook(kind, object);
}

}  // namespace sg::order
