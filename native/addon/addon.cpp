// The module's entry point: classes, op functions and device queries.
#include <napi.h>

#include <dlfcn.h>

#include <cmath>

#include "../core/op_profile.h"
#include "../core/parallel.h"
#include "../core/stream_order.h"
#include "../cpu/cpu_backend.h"
#include "../cpu/kernels.h"
#ifdef SYNTHGRAD_WITH_CUDA
#include "../../cuda/cuda_backend.h"
#endif
#include "completion.h"
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
  o.Set("cpuKernels", Napi::String::New(env, cpu::kernelsIsa()));
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

// checkStreams(enabled?) -> whether the stream-order checker is on (core/stream_order.h);
// switching it (either way) makes it forget what it knew.
Napi::Value checkStreams(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    if (!info[0].IsUndefined()) order::setChecking(Args(info, "checkStreams").boolean(0, "enabled"));
    return Napi::Boolean::New(info.Env(), order::checking());
  });
}

// profile(action) with action 'start' (forget the totals, time every op from now on), 'stop',
// or 'read' -> [{ op, calls, seconds }]: the op profile (core/op_profile.h; CPU ops only).
Napi::Value profile(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    const std::string action = Args(info, "profile").string(0, "action");
    Napi::Env env = info.Env();
    if (action == "start") {
      profile::start();
    } else if (action == "stop") {
      profile::stop();
    } else if (action == "read") {
      const std::vector<profile::OpTime> times = profile::read();
      Napi::Array out = Napi::Array::New(env, times.size());
      for (size_t i = 0; i < times.size(); ++i) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("op", Napi::String::New(env, times[i].op));
        o.Set("calls", Napi::Number::New(env, double(times[i].calls)));
        o.Set("seconds", Napi::Number::New(env, times[i].seconds));
        out.Set(uint32_t(i), o);
      }
      return out;
    } else {
      throw rangeError("profile: 'action' must be 'start', 'stop' or 'read', got '" + action + "'");
    }
    return env.Undefined();
  });
}

// beginCapture(stream) -> Graph (capturing): later work on the stream (and the streams that
// join) is recorded. Disposing of that Graph, or its collection, before endCapture() discards
// the capture.
Napi::Value beginCapture(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    return GraphHandle::begin(info.Env(), Args(info, "beginCapture").sharedStream(0, "stream"));
  });
}

// endCapture(stream) -> the Graph that beginCapture returned, now holding the recorded work.
Napi::Value endCapture(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    return GraphHandle::end(info.Env(), Args(info, "endCapture").stream(0, "stream"));
  });
}

// cancelQueued(device) -> the number of queued ops dropped: the work this thread enqueued on
// the device's streams that has not started (see Backend::cancelQueued).
Napi::Value cancelQueued(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Device d = Args(info, "cancelQueued").device(0, "device");
    return Napi::Number::New(info.Env(), double(backendFor(d).cancelQueued()));
  });
}

// adamScalars(lr, beta1, beta2, step) -> [stepSize, bc2Sqrt], the float32 values adamStep uses.
Napi::Value adamScalars(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Args a(info, "adamScalars");
    const float lr = float(a.number(0, "lr"));
    if (!std::isfinite(lr))
      throw rangeError("adamScalars: 'lr' must be a finite number, got " +
                       a.at(0).ToString().Utf8Value());
    const char* betaNames[] = {"beta1", "beta2"};
    float betas[2];
    for (int k = 0; k < 2; ++k) {
      const float b = float(a.number(1 + k, betaNames[k]));  // in float32, as adamStep uses it
      if (!(b >= 0 && b < 1))
        throw rangeError(std::string("adamScalars: '") + betaNames[k] + "' must be in [0, 1), got " +
                         a.at(1 + k).ToString().Utf8Value());
      betas[k] = b;
    }
    const int64_t step = a.integer(3, "step");
    if (step < 1) throw rangeError("adamScalars: 'step' must be >= 1, got " + std::to_string(step));
    const AdamScalars sc = sg::adamScalars(lr, betas[0], betas[1], step);
    Napi::Array out = Napi::Array::New(info.Env(), 2);
    out.Set(0u, Napi::Number::New(info.Env(), sc.stepSize));
    out.Set(1u, Napi::Number::New(info.Env(), sc.bc2Sqrt));
    return out;
  });
}

// At environment teardown (the process or a Worker ending), nothing can observe the results of
// the ops this environment queued: drop those not yet started, so that exit and
// Worker.terminate() do not wait for them (the streams' destructors would run them all).
void dropQueuedWork(void*) {
  try {
    backendFor(Device{DeviceKind::Cpu, 0}).cancelQueued();
  } catch (...) {  // nothing may escape a cleanup hook
  }
}

}  // namespace

// gemmTf32(enabled?): sets (when given) and returns whether CUDA GEMMs use TF32 tensor cores.
Napi::Value gemmTf32(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    if (!info[0].IsUndefined()) setCudaGemmTf32(Args(info, "gemmTf32").boolean(0, "enabled"));
    return Napi::Boolean::New(info.Env(), cudaGemmTf32());
  });
}

// rawHandles(tensor, stream): a CUDA tensor's device address and its stream's cudaStream_t, as
// BigInts, for the NCCL transport (ts/distributed/nccl.ts), which enqueues ncclSend/ncclRecv of
// the tensor's bytes on that stream. The stream-order checker does not see those transfers.
namespace {
Napi::Value rawHandles(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Args a(info, "rawHandles");
    Tensor t = a.tensor(0, "tensor");
    sg::Stream& s = a.stream(1, "stream");
    if (t.device().kind != DeviceKind::Cuda)
      throw rangeError("rawHandles: 'tensor' is on " + t.device().name() + ": device handles exist for CUDA tensors only");
    if (s.device() != t.device())
      throw rangeError("rawHandles: 'stream' is on " + s.device().name() + " but 'tensor' on " + t.device().name());
#ifdef SYNTHGRAD_WITH_CUDA
    auto big = [&](const void* p) { return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p))); };
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("pointer", big(t.storage->data()));
    o.Set("stream", big(cuda::streamHandle(s)));
    return o;
#else
    throw rangeError("rawHandles: this build has no CUDA backend");
#endif
  });
}
}  // namespace

namespace {
// The backends, their stream threads and the thread pool are process-wide and outlive any one
// environment. Node.js dlcloses an addon when the environment that loaded it ends: a Worker
// that was the only user would unmap this library under those threads. Reopening it with
// RTLD_NODELETE (never closed) keeps it mapped for the life of the process.
void pinLibrary() {
  static const bool pinned = [] {  // once per process, thread-safe
    Dl_info self{};
    return dladdr(reinterpret_cast<void*>(&pinLibrary), &self) && self.dli_fname &&
           dlopen(self.dli_fname, RTLD_NOW | RTLD_NODELETE | RTLD_NOLOAD) != nullptr;
  }();
  (void)pinned;
}

// The built-in backends: the addon is the one place that knows them by name (arrows run
// addon -> backends -> core); everything else asks core's registry.
void registerBackends() {
  registerCpuBackend();
#ifdef SYNTHGRAD_WITH_CUDA
  cuda::registerCudaBackend();
#endif
}
}  // namespace

Napi::Object init(Napi::Env env, Napi::Object exports) {
  pinLibrary();
  registerBackends();
  auto* data = new AddonData();
  env.SetInstanceData(data);
  data->life = std::make_shared<EnvLife>();
  watchEnvLife(env, data->life);
  if (napi_add_env_cleanup_hook(env, dropQueuedWork, nullptr) != napi_ok)
    throw Napi::Error::New(env, "synthgrad: could not register the environment cleanup hook");
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
  exports.Set("checkStreams", Napi::Function::New(env, checkStreams, "checkStreams"));
  exports.Set("profile", Napi::Function::New(env, profile, "profile"));
  exports.Set("gemmTf32", Napi::Function::New(env, gemmTf32, "gemmTf32"));
  exports.Set("beginCapture", Napi::Function::New(env, beginCapture, "beginCapture"));
  exports.Set("endCapture", Napi::Function::New(env, endCapture, "endCapture"));
  exports.Set("adamScalars", Napi::Function::New(env, adamScalars, "adamScalars"));
  exports.Set("cancelQueued", Napi::Function::New(env, cancelQueued, "cancelQueued"));
  exports.Set("rawHandles", Napi::Function::New(env, rawHandles, "rawHandles"));
  return exports;
}

}  // namespace sg::addon

static Napi::Object initSynthgrad(Napi::Env env, Napi::Object exports) {
  return sg::addon::init(env, exports);
}

NODE_API_MODULE(synthgrad, initSynthgrad)
