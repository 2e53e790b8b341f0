#include "completion.h"

#include <memory>

namespace sg::addon {

const std::string kCancelled = "\x01synthgrad: cancelled";

namespace {

struct Pending {
  Napi::Promise::Deferred deferred;
  Resolver resolveWith;
};

struct Outcome {
  std::string error;
};

void settle(Napi::Env env, Napi::Function, Pending* pending, Outcome* outcome) {
  std::unique_ptr<Pending> p(pending);
  std::unique_ptr<Outcome> o(outcome);
  if (env == nullptr) return;  // the environment is shutting down
  Napi::HandleScope scope(env);
  if (o->error == kCancelled) {
    p->deferred.Resolve(env.Undefined());
    return;
  }
  if (!o->error.empty()) {
    p->deferred.Reject(Napi::Error::New(env, o->error).Value());
    return;
  }
  try {
    p->deferred.Resolve(p->resolveWith ? p->resolveWith(env) : env.Undefined());
  } catch (const Napi::Error& e) {
    p->deferred.Reject(e.Value());
  } catch (const std::exception& e) {
    p->deferred.Reject(Napi::Error::New(env, e.what()).Value());
  }
}

using Bridge = Napi::TypedThreadSafeFunction<Pending, Outcome, settle>;

}  // namespace

Completion completion(Napi::Env env, Napi::Promise::Deferred deferred, Resolver resolveWith) {
  auto* pending = new Pending{deferred, std::move(resolveWith)};
  Bridge bridge = Bridge::New(env, "synthgrad.completion", 0, 1, pending);
  return [bridge](const std::string& error) mutable {
    bridge.BlockingCall(new Outcome{error});
    bridge.Release();
  };
}

}  // namespace sg::addon
