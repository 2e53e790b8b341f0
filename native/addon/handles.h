// The JavaScript classes of the addon: Tensor, Stream, Event and Graph handles.
//
// A handle owns a shared reference to the native object; dispose() (tensors) drops it early,
// the garbage collector's finalizer drops it otherwise. Queued work holds its own references,
// so dropping a handle never frees memory that a stream still uses.
//
// Every handle is type-tagged with its class (napi_type_tag_object) once its construction has
// succeeded, and every method, accessor and argument conversion checks the tag before it
// unwraps: an object of another class, one whose prototype was swapped, or a bare object made
// from a prototype is a TypeError, never a pointer cast to the wrong class.
#pragma once
#include <napi.h>

#include <memory>
#include <vector>

#include "../core/backend.h"

namespace sg::addon {

struct EnvLife;

class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static const napi_type_tag kTag;
  static constexpr const char* kClass = "a Tensor";

  static Napi::Function define(Napi::Env env);
  // A new JavaScript Tensor handle for `tensor`.
  static Napi::Object wrap(Napi::Env env, Tensor tensor);
  // The handle behind `v`, or null if `v` is not a Tensor handle.
  static TensorHandle* from(Napi::Env env, const Napi::Value& v);

  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;

  const Tensor& tensor() const { return tensor_; }
  bool disposed() const { return !tensor_.storage; }

  Napi::Value shape(const Napi::CallbackInfo& info);
  Napi::Value dtype(const Napi::CallbackInfo& info);
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value isDisposed(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value reshape(const Napi::CallbackInfo& info);
  Napi::Value view(const Napi::CallbackInfo& info);
  Napi::Value read(const Napi::CallbackInfo& info);
  Napi::Value write(const Napi::CallbackInfo& info);
  Napi::Value sharesStorage(const Napi::CallbackInfo& info);

 private:
  void release();

  Tensor tensor_;
  napi_env env_;
  int64_t accounted_ = 0;  // bytes reported to V8 as external memory
};

class StreamHandle : public Napi::ObjectWrap<StreamHandle> {
 public:
  static const napi_type_tag kTag;
  static constexpr const char* kClass = "a Stream";

  static Napi::Function define(Napi::Env env);
  static Napi::Object wrapDefault(Napi::Env env, Device device);
  static StreamHandle* from(Napi::Env env, const Napi::Value& v);

  explicit StreamHandle(const Napi::CallbackInfo& info);
  Stream& stream() const { return *stream_; }
  const std::shared_ptr<Stream>& shared() const { return stream_; }

  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value wait(const Napi::CallbackInfo& info);
  Napi::Value synchronize(const Napi::CallbackInfo& info);
  Napi::Value cancel(const Napi::CallbackInfo& info);

 private:
  std::shared_ptr<Stream> stream_;
};

class EventHandle : public Napi::ObjectWrap<EventHandle> {
 public:
  static const napi_type_tag kTag;
  static constexpr const char* kClass = "an Event";

  static Napi::Function define(Napi::Env env);
  static EventHandle* from(Napi::Env env, const Napi::Value& v);

  explicit EventHandle(const Napi::CallbackInfo& info);
  Event& event() const { return *event_; }

  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value record(const Napi::CallbackInfo& info);
  Napi::Value synchronize(const Napi::CallbackInfo& info);

 private:
  std::shared_ptr<Event> event_;
};

// A graph: made by beginCapture() (then capturing), filled by endCapture(), never by `new`.
// A capture whose Graph is disposed of or garbage-collected before endCapture() is discarded,
// so that a capture begun and never ended cannot block the later ones of the process.
class GraphHandle : public Napi::ObjectWrap<GraphHandle> {
 public:
  static const napi_type_tag kTag;
  static constexpr const char* kClass = "a Graph";

  static Napi::Function define(Napi::Env env);
  static GraphHandle* from(Napi::Env env, const Napi::Value& v);
  // Begins a capture on `origin`; returns its Graph (capturing).
  static Napi::Object begin(Napi::Env env, std::shared_ptr<Stream> origin);
  // Ends the capture that this environment began on `origin`; returns its Graph, now holding
  // the recorded work. Throws (and discards the capture) if the backend refuses it.
  static Napi::Object end(Napi::Env env, Stream& origin);

  explicit GraphHandle(const Napi::CallbackInfo& info);
  ~GraphHandle() override;

  Napi::Value launch(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value isDisposed(const Napi::CallbackInfo& info);
  Napi::Value isCapturing(const Napi::CallbackInfo& info);

 private:
  // Ends an open capture and drops what it recorded; never throws.
  void discardCapture() noexcept;

  napi_env env_;
  Device device_{DeviceKind::Cpu, 0};
  std::shared_ptr<Stream> capturing_;  // the capture's origin while it is open
  std::unique_ptr<Graph> graph_;
};

// Per addon instance (one per Node.js environment / worker).
struct AddonData {
  Napi::FunctionReference tensor, stream, event, graph;
  std::shared_ptr<EnvLife> life;            // see completion.h
  std::vector<GraphHandle*> capturing;      // graphs whose capture is open
};

// "a Tensor", "a Stream", ..., or a short description of any other value, for messages.
std::string describeValue(Napi::Env env, const Napi::Value& v);

}  // namespace sg::addon
