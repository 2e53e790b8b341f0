// The module's entry point: classes, op functions and device queries.
#include <napi.h>

#include "../core/parallel.h"
#include "convert.h"
#include "handles.h"
#include "ops_binding.h"

namespace sg::addon {
namespace {

Napi::Value buildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("cuda", Napi::Boolean::New(env, builtWithCuda()));
  o.Set("cudaDevices", Napi::Number::New(env, cudaDeviceCount()));
  o.Set("cpuGemm", Napi::String::New(env, cpu::sgemmIsa()));
  o.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  return o;
}

Napi::Value deviceName(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Device d = Args(info, "deviceName").device(0, "device");
    return Napi::String::New(info.Env(), backendFor(d).deviceName());
  });
}

Napi::Value defaultStream(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Device d = Args(info, "defaultStream").device(0, "device");
    backendFor(d);
    return StreamHandle::wrapDefault(info.Env(), d);
  });
}

Napi::Value threads(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    if (!info[0].IsUndefined()) {
      int64_t n = Args(info, "threads").integer(0, "count");
      if (n < 1 || n > 1024) throw rangeError("threads: 'count' must be in [1, 1024]");
      setParallelism(int(n));
    }
    return Napi::Number::New(info.Env(), parallelism());
  });
}

}  // namespace

// gemmTf32(enabled?): sets (when given) and returns whether CUDA GEMMs use TF32 tensor cores.
Napi::Value gemmTf32(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    if (!info[0].IsUndefined()) setCudaGemmTf32(Args(info, "gemmTf32").boolean(0, "enabled"));
    return Napi::Boolean::New(info.Env(), cudaGemmTf32());
  });
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData(data);
  Napi::Function tensor = TensorHandle::define(env);
  Napi::Function stream = StreamHandle::define(env);
  Napi::Function event = EventHandle::define(env);
  data->tensor = Napi::Persistent(tensor);
  data->stream = Napi::Persistent(stream);
  data->event = Napi::Persistent(event);
  exports.Set("Tensor", tensor);
  exports.Set("Stream", stream);
  exports.Set("Event", event);
  Napi::Object ops = Napi::Object::New(env);
  registerOps(env, ops);
  exports.Set("ops", ops);
  exports.Set("buildInfo", Napi::Function::New(env, buildInfo, "buildInfo"));
  exports.Set("deviceName", Napi::Function::New(env, deviceName, "deviceName"));
  exports.Set("defaultStream", Napi::Function::New(env, defaultStream, "defaultStream"));
  exports.Set("threads", Napi::Function::New(env, threads, "threads"));
  exports.Set("gemmTf32", Napi::Function::New(env, gemmTf32, "gemmTf32"));
  return exports;
}

}  // namespace sg::addon

static Napi::Object initSynthgrad(Napi::Env env, Napi::Object exports) {
  return sg::addon::init(env, exports);
}

NODE_API_MODULE(synthgrad, initSynthgrad)
