#include "completion.h"

#include "convert.h"
#include "handles.h"

namespace sg::addon {

const std::string kCancelled = "\x01synthgrad: cancelled";

namespace {

// Owned by the thread-safe function (deleted by its finalizer, which Node.js calls both after
// the last release and at environment teardown), so it is freed even if never settled.
struct Pending {
  napi_deferred deferred;
  Resolver resolveWith;
  std::function<void()> onSettle;
};

struct Outcome {
  std::string error;
};

// Settles through the C API, whose failures are status codes: at teardown JavaScript may no
// longer run, and node-addon-api would turn such a status into a C++ exception.
napi_value errorValue(napi_env env, const std::string& message) {
  napi_value text = nullptr, code = nullptr, error = nullptr;
  if (napi_create_string_utf8(env, message.data(), message.size(), &text) != napi_ok) return nullptr;
  if (napi_create_string_utf8(env, kCodeNative, NAPI_AUTO_LENGTH, &code) != napi_ok) return nullptr;
  if (napi_create_error(env, code, text, &error) != napi_ok) return nullptr;
  return error;
}

void settle(Napi::Env env, Napi::Function, Pending* pending, Outcome* outcome) noexcept {
  std::unique_ptr<Outcome> o(outcome);
  if (env == nullptr || pending == nullptr) return;  // the environment is shutting down
  napi_env raw = env;
  napi_handle_scope scope = nullptr;
  if (napi_open_handle_scope(raw, &scope) != napi_ok) return;
  napi_deferred deferred = pending->deferred;
  napi_value value = nullptr;
  bool resolve = true;
  if (o->error != kCancelled && pending->onSettle) {
    try {
      pending->onSettle();
    } catch (...) {  // nothing may escape into Node.js
    }
  }
  if (o->error == kCancelled) {
  } else if (!o->error.empty()) {
    resolve = false;
    value = errorValue(raw, o->error);
  } else if (pending->resolveWith) {
    try {
      value = pending->resolveWith(env);
    } catch (const Napi::Error& e) {
      resolve = false;
      value = e.Value();
    } catch (const std::exception& e) {
      resolve = false;
      value = errorValue(raw, e.what());
    } catch (...) {
      resolve = false;
      value = errorValue(raw, "synthgrad: reading the result failed");
    }
  }
  if (value == nullptr) (void)napi_get_undefined(raw, &value);
  if (value != nullptr)
    (void)(resolve ? napi_resolve_deferred(raw, deferred, value)
                   : napi_reject_deferred(raw, deferred, value));
  // An exception left by a failed call must not surface in unrelated JavaScript.
  bool pendingException = false;
  if (napi_is_exception_pending(raw, &pendingException) == napi_ok && pendingException) {
    napi_value ignored;
    (void)napi_get_and_clear_last_exception(raw, &ignored);
  }
  (void)napi_close_handle_scope(raw, scope);
}

void freePending(Napi::Env, void*, Pending* pending) noexcept { delete pending; }

using Bridge = Napi::TypedThreadSafeFunction<Pending, Outcome, settle>;

void markDead(void* arg) {
  auto* life = static_cast<std::shared_ptr<EnvLife>*>(arg);
  {
    std::lock_guard<std::mutex> lock((*life)->m);
    (*life)->alive = false;
  }
  delete life;
}

}  // namespace

void watchEnvLife(Napi::Env env, const std::shared_ptr<EnvLife>& life) {
  auto* arg = new std::shared_ptr<EnvLife>(life);
  if (napi_add_env_cleanup_hook(env, markDead, arg) != napi_ok) {
    delete arg;
    throw Napi::Error::New(env, "synthgrad: could not register the environment cleanup hook");
  }
}

Napi::Promise newPromise(Napi::Env env, napi_deferred* deferred) {
  napi_value promise = nullptr;
  if (napi_create_promise(env, deferred, &promise) != napi_ok) throw Napi::Error::New(env);
  return Napi::Promise(env, promise);
}

Completion completion(Napi::Env env, napi_deferred deferred, Resolver resolveWith,
                      std::function<void()> onSettle) {
  std::shared_ptr<EnvLife> life = env.GetInstanceData<AddonData>()->life;
  auto* pending = new Pending{deferred, std::move(resolveWith), std::move(onSettle)};
  Bridge bridge;
  try {
    bridge = Bridge::New(env, "synthgrad.completion", 0, 1, pending, freePending,
                         static_cast<void*>(nullptr));
  } catch (...) {
    delete pending;
    throw;
  }
  return [bridge, life](const std::string& error) mutable {
    std::lock_guard<std::mutex> lock(life->m);
    if (!life->alive) return;  // the thread-safe function is gone or going; see the header
    auto* outcome = new Outcome{error};
    if (bridge.BlockingCall(outcome) != napi_ok) delete outcome;
    (void)bridge.Release();
  };
}

}  // namespace sg::addon
