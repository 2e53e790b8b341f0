// A one-shot bridge from a worker thread back to a Promise on the main thread.
//
// `completion(env, deferred, resolveWith)` returns a function that any thread may call once
// with an error message (empty = success). The Promise is then settled on the main thread:
// rejected with an Error carrying the message, or resolved with resolveWith(env). Until then
// the pending Promise keeps the event loop alive; the main thread never blocks.
#pragma once
#include <napi.h>

#include <functional>
#include <string>

namespace sg::addon {

using Resolver = std::function<Napi::Value(Napi::Env)>;
using Completion = std::function<void(const std::string& error)>;

Completion completion(Napi::Env env, Napi::Promise::Deferred deferred, Resolver resolveWith);

// Pass to a completion whose work could not be enqueued (the caller throws instead): releases
// it, so that the never-returned Promise does not keep the event loop alive; it resolves
// unobserved (a rejection would be reported as unhandled).
extern const std::string kCancelled;

// Calls whenDone(done); if that throws, cancels `done` and rethrows.
template <class WhenDone>
void enqueueCompletion(WhenDone&& whenDone, const Completion& done) {
  try {
    whenDone(done);
  } catch (...) {
    done(kCancelled);
    throw;
  }
}

}  // namespace sg::addon
