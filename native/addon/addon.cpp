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
  o.Set("cudaError", Napi::String::New(env, cudaDeviceError()));
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

// beginCapture(stream): later work on the stream (and the streams that join) is recorded.
Napi::Value beginCapture(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Stream& s = Args(info, "beginCapture").stream(0, "stream");
    backendFor(s.device()).beginCapture(s);
    return info.Env().Undefined();
  });
}

// endCapture(stream) -> Graph
Napi::Value endCapture(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Stream& s = Args(info, "endCapture").stream(0, "stream");
    return GraphHandle::wrap(info.Env(), s.device(), backendFor(s.device()).endCapture(s));
  });
}

// adamScalars(lr, beta1, beta2, step) -> [stepSize, bc2Sqrt], the float32 values adamStep uses.
Napi::Value adamScalars(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Args a(info, "adamScalars");
    const int64_t step = a.integer(3, "step");
    if (step < 1) throw rangeError("adamScalars: 'step' must be >= 1, got " + std::to_string(step));
    const cpu::AdamScalars sc = cpu::adamScalars(float(a.number(0, "lr")), float(a.number(1, "beta1")),
                                                 float(a.number(2, "beta2")), step);
    Napi::Array out = Napi::Array::New(info.Env(), 2);
    out.Set(0u, Napi::Number::New(info.Env(), sc.stepSize));
    out.Set(1u, Napi::Number::New(info.Env(), sc.bc2Sqrt));
    return out;
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
  data->graph = Napi::Persistent(GraphHandle::define(env));
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
  exports.Set("beginCapture", Napi::Function::New(env, beginCapture, "beginCapture"));
  exports.Set("endCapture", Napi::Function::New(env, endCapture, "endCapture"));
  exports.Set("adamScalars", Napi::Function::New(env, adamScalars, "adamScalars"));
  return exports;
}

}  // namespace sg::addon

static Napi::Object initSynthgrad(Napi::Env env, Napi::Object exports) {
  return sg::addon::init(env, exports);
}

NODE_API_MODULE(synthgrad, initSynthgrad)
