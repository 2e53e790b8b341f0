// The JavaScript classes of the addon: Tensor, Stream and Event handles.
//
// A handle owns a shared reference to the native object; dispose() (tensors) drops it early,
// the garbage collector's finalizer drops it otherwise. Queued work holds its own references,
// so dropping a handle never frees memory that a stream still uses.
#pragma once
#include <napi.h>

#include <memory>

#include "../core/backend.h"

namespace sg::addon {

class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  // A new JavaScript Tensor handle for `tensor`.
  static Napi::Object wrap(Napi::Env env, Tensor tensor);
  static bool isHandle(Napi::Env env, const Napi::Value& v);

  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;

  const Tensor& tensor() const { return tensor_; }
  bool disposed() const { return !tensor_.storage; }

 private:
  Napi::Value shape(const Napi::CallbackInfo& info);
  Napi::Value dtype(const Napi::CallbackInfo& info);
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value isDisposed(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value reshape(const Napi::CallbackInfo& info);
  Napi::Value read(const Napi::CallbackInfo& info);
  Napi::Value sharesStorage(const Napi::CallbackInfo& info);
  void release();

  Tensor tensor_;
  napi_env env_;
  int64_t accounted_ = 0;  // bytes reported to V8 as external memory
};

class StreamHandle : public Napi::ObjectWrap<StreamHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  static Napi::Object wrapDefault(Napi::Env env, Device device);
  static bool isHandle(Napi::Env env, const Napi::Value& v);

  explicit StreamHandle(const Napi::CallbackInfo& info);
  Stream& stream() const { return *stream_; }

 private:
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value wait(const Napi::CallbackInfo& info);
  Napi::Value synchronize(const Napi::CallbackInfo& info);

  std::shared_ptr<Stream> stream_;
};

class EventHandle : public Napi::ObjectWrap<EventHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  static bool isHandle(Napi::Env env, const Napi::Value& v);

  explicit EventHandle(const Napi::CallbackInfo& info);
  Event& event() const { return *event_; }

 private:
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value record(const Napi::CallbackInfo& info);
  Napi::Value synchronize(const Napi::CallbackInfo& info);

  std::shared_ptr<Event> event_;
};

// A captured graph (made by endCapture(), never by `new`).
class GraphHandle : public Napi::ObjectWrap<GraphHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  static Napi::Object wrap(Napi::Env env, Device device, std::unique_ptr<Graph> graph);

  explicit GraphHandle(const Napi::CallbackInfo& info);

 private:
  Napi::Value launch(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value isDisposed(const Napi::CallbackInfo& info);

  Device device_{DeviceKind::Cpu, 0};
  std::unique_ptr<Graph> graph_;
};

// The constructors, kept per addon instance (one per Node.js environment / worker).
struct AddonData {
  Napi::FunctionReference tensor, stream, event, graph;
};

}  // namespace sg::addon
