// A one-shot bridge from a worker thread back to a Promise on the main thread.
//
// `completion(env, deferred, resolveWith)` returns a function that any thread may call once
// with an error message (empty = success). The Promise is then settled on the main thread:
// rejected with an Error carrying the message, or resolved with resolveWith(env). Until then
// the pending Promise keeps the event loop alive; the main thread never blocks.
//
// Environment teardown (a Worker terminated, the process exiting) may come while work that
// will call a completion is still queued: Node.js then deletes the thread-safe functions, so
// a later call would use freed memory. Each environment therefore has an EnvLife, marked dead
// by an environment cleanup hook (which runs before Node.js frees anything); a completion
// called after that drops its outcome instead of touching the thread-safe function. The
// settling callback never throws (an exception there would abort the process): a Promise
// that can no longer be settled, because JavaScript cannot run any more, is left as it is.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace sg::addon {

using Resolver = std::function<Napi::Value(Napi::Env)>;
using Completion = std::function<void(const std::string& error)>;

// Whether an environment can still take completions; shared with every completion made in it.
struct EnvLife {
  std::mutex m;  // held while a completion hands its outcome over, and while marked dead
  bool alive = true;
};

// Registers the cleanup hook that marks `env`'s life dead at teardown (once, at module load).
void watchEnvLife(Napi::Env env, const std::shared_ptr<EnvLife>& life);

// A new pending Promise; `*deferred` settles it (through a completion).
Napi::Promise newPromise(Napi::Env env, napi_deferred* deferred);

// `onSettle` (may be empty) runs on the main thread just before the Promise settles, resolved
// or rejected (not for kCancelled).
Completion completion(Napi::Env env, napi_deferred deferred, Resolver resolveWith,
                      std::function<void()> onSettle = nullptr);

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
