#include "handles.h"

#include <cstring>
#include <vector>

#include "completion.h"
#include "convert.h"

namespace sg::addon {
namespace {

AddonData& data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

Napi::Array shapeArray(Napi::Env env, const Shape& shape) {
  Napi::Array a = Napi::Array::New(env, shape.size());
  for (size_t k = 0; k < shape.size(); ++k) a.Set(k, Napi::Number::New(env, double(shape[k])));
  return a;
}

bool instanceOf(const Napi::Value& v, const Napi::FunctionReference& ctor) {
  return v.IsObject() && v.As<Napi::Object>().InstanceOf(ctor.Value());
}

// A Promise settled when everything enqueued on `stream` so far has run.
Napi::Value afterStream(Napi::Env env, Stream& stream, Resolver resolveWith) {
  auto deferred = Napi::Promise::Deferred::New(env);
  enqueueCompletion([&](const Completion& done) { stream.whenDone(done); },
                    completion(env, deferred, std::move(resolveWith)));
  return deferred.Promise();
}

}  // namespace

// ---- Tensor -----------------------------------------------------------------------------

Napi::Function TensorHandle::define(Napi::Env env) {
  return DefineClass(env, "Tensor",
                     {InstanceAccessor<&TensorHandle::shape>("shape"),
                      InstanceAccessor<&TensorHandle::dtype>("dtype"),
                      InstanceAccessor<&TensorHandle::device>("device"),
                      InstanceAccessor<&TensorHandle::isDisposed>("disposed"),
                      InstanceMethod<&TensorHandle::dispose>("dispose"),
                      InstanceMethod<&TensorHandle::reshape>("reshape"),
                      InstanceMethod<&TensorHandle::read>("read"),
                      InstanceMethod<&TensorHandle::sharesStorage>("sharesStorage")});
}

bool TensorHandle::isHandle(Napi::Env env, const Napi::Value& v) {
  return instanceOf(v, data(env).tensor);
}

Napi::Object TensorHandle::wrap(Napi::Env env, Tensor tensor) {
  return data(env).tensor.New({Napi::External<Tensor>::New(env, &tensor)});
}

// new Tensor(shape, dtype, device, init): init is a typed array of matching type and length,
// 'zeros', or undefined (contents unspecified: for outputs that an op overwrites).
TensorHandle::TensorHandle(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<TensorHandle>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (info[0].IsExternal()) {  // from wrap()
    tensor_ = *info[0].As<Napi::External<Tensor>>().Data();
    return;
  }
  guarded(info, [&]() -> Napi::Value {
    Args args(info, "Tensor");
    Shape shape = args.shape(0, "shape");
    DType dtype = args.dtype(1, "dtype");
    Device device = args.device(2, "device");
    Backend& backend = backendFor(device);
    Tensor t{dtype, shape, nullptr};
    Napi::Value init = info[3];
    const void* source = nullptr;
    std::vector<uint8_t> zeros;
    if (init.IsTypedArray()) {
      auto typed = init.As<Napi::TypedArray>();
      napi_typedarray_type want =
          dtype == DType::Float32 ? napi_float32_array : napi_int32_array;
      if (typed.TypedArrayType() != want)
        throw args.typeError("data", dtype == DType::Float32 ? "a Float32Array for float32"
                                                              : "an Int32Array for int32");
      if (int64_t(typed.ElementLength()) != t.numel())
        throw rangeError("Tensor: 'data' has " + std::to_string(typed.ElementLength()) +
                         " elements but shape " + shapeString(shape) + " needs " +
                         std::to_string(t.numel()));
      source = static_cast<const uint8_t*>(typed.ArrayBuffer().Data()) + typed.ByteOffset();
    } else if (init.IsString() && init.As<Napi::String>().Utf8Value() == "zeros") {
      zeros.assign(t.bytes(), 0);
      source = zeros.data();
    } else if (!init.IsUndefined()) {
      throw args.typeError("data", "a typed array, 'zeros' or undefined");
    }
    t.storage = backend.allocate(t.bytes());
    if (source && t.bytes() > 0) backend.upload(t, source);
    tensor_ = std::move(t);
    accounted_ = int64_t(tensor_.bytes());
    Napi::MemoryManagement::AdjustExternalMemory(env, accounted_);
    return env.Undefined();
  });
}

TensorHandle::~TensorHandle() { release(); }

void TensorHandle::release() {
  tensor_.storage.reset();
  if (accounted_) {
    Napi::MemoryManagement::AdjustExternalMemory(Napi::Env(env_), -accounted_);
    accounted_ = 0;
  }
}

Napi::Value TensorHandle::shape(const Napi::CallbackInfo& info) {
  return shapeArray(info.Env(), tensor_.shape);
}

Napi::Value TensorHandle::dtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dtypeName(tensor_.dtype));
}

Napi::Value TensorHandle::device(const Napi::CallbackInfo& info) {
  if (disposed()) return info.Env().Null();
  return Napi::String::New(info.Env(), tensor_.device().name());
}

Napi::Value TensorHandle::isDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), disposed());
}

Napi::Value TensorHandle::dispose(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}

Napi::Value TensorHandle::sharesStorage(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Tensor other = Args(info, "sharesStorage").tensor(0, "other");
    return Napi::Boolean::New(info.Env(), !disposed() && other.storage == tensor_.storage);
  });
}

// reshape(shape): a new handle on the same storage.
Napi::Value TensorHandle::reshape(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Args args(info, "reshape");
    if (disposed()) throw typeError("reshape: the tensor was disposed");
    Shape shape = args.shape(0, "shape");
    if (numel(shape) != tensor_.numel())
      throw rangeError("reshape: 'shape' " + shapeString(shape) + " has " +
                       std::to_string(numel(shape)) + " elements, the tensor " +
                       shapeString(tensor_.shape) + " has " + std::to_string(tensor_.numel()));
    Tensor view = tensor_;
    view.shape = shape;
    return wrap(info.Env(), view);
  });
}

// read(stream?): a Promise of a new Float32Array/Int32Array with the contents once `stream`
// (default: the device's default stream) reaches this point.
Napi::Value TensorHandle::read(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Args args(info, "read");
    if (disposed()) throw typeError("read: the tensor was disposed");
    Stream& stream = info[0].IsUndefined() ? backendFor(tensor_.device()).defaultStream()
                                           : args.stream(0, "stream");
    if (stream.device() != tensor_.device())
      throw typeError("read: 'stream' is on " + stream.device().name() +
                      " but the tensor is on " + tensor_.device().name());
    auto host = std::make_shared<std::vector<uint8_t>>(tensor_.bytes());
    if (!host->empty()) backendFor(tensor_.device()).download(stream, tensor_, host->data());
    DType dtype = tensor_.dtype;
    size_t count = size_t(tensor_.numel());
    return afterStream(info.Env(), stream, [host, dtype, count](Napi::Env env) -> Napi::Value {
      auto buffer = Napi::ArrayBuffer::New(env, host->size());
      if (!host->empty()) std::memcpy(buffer.Data(), host->data(), host->size());
      if (dtype == DType::Float32) return Napi::Float32Array::New(env, count, buffer, 0);
      return Napi::Int32Array::New(env, count, buffer, 0);
    });
  });
}

// ---- Stream -----------------------------------------------------------------------------

Napi::Function StreamHandle::define(Napi::Env env) {
  return DefineClass(env, "Stream",
                     {InstanceAccessor<&StreamHandle::device>("device"),
                      InstanceMethod<&StreamHandle::wait>("wait"),
                      InstanceMethod<&StreamHandle::synchronize>("synchronize")});
}

bool StreamHandle::isHandle(Napi::Env env, const Napi::Value& v) {
  return instanceOf(v, data(env).stream);
}

Napi::Object StreamHandle::wrapDefault(Napi::Env env, Device device) {
  return data(env).stream.New({Napi::String::New(env, device.name()), Napi::Boolean::New(env, true)});
}

// new Stream(device, useDefault = false)
StreamHandle::StreamHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StreamHandle>(info) {
  guarded(info, [&]() -> Napi::Value {
    Args args(info, "Stream");
    Backend& backend = backendFor(args.device(0, "device"));
    if (info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value())
      stream_ = std::shared_ptr<Stream>(&backend.defaultStream(), [](Stream*) {});
    else
      stream_ = backend.createStream();
    return info.Env().Undefined();
  });
}

Napi::Value StreamHandle::device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), stream_ ? stream_->device().name() : "none");
}

Napi::Value StreamHandle::wait(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Event& event = Args(info, "wait").event(0, "event");
    if (event.device() != stream_->device())
      throw typeError("wait: 'event' is on " + event.device().name() + " but the stream is on " +
                      stream_->device().name());
    stream_->wait(event);
    return info.Env().Undefined();
  });
}

Napi::Value StreamHandle::synchronize(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value { return afterStream(info.Env(), *stream_, nullptr); });
}

// ---- Event ------------------------------------------------------------------------------

Napi::Function EventHandle::define(Napi::Env env) {
  return DefineClass(env, "Event",
                     {InstanceAccessor<&EventHandle::device>("device"),
                      InstanceMethod<&EventHandle::record>("record"),
                      InstanceMethod<&EventHandle::synchronize>("synchronize")});
}

bool EventHandle::isHandle(Napi::Env env, const Napi::Value& v) {
  return instanceOf(v, data(env).event);
}

EventHandle::EventHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EventHandle>(info) {
  guarded(info, [&]() -> Napi::Value {
    event_ = backendFor(Args(info, "Event").device(0, "device")).createEvent();
    return info.Env().Undefined();
  });
}

Napi::Value EventHandle::device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), event_ ? event_->device().name() : "none");
}

Napi::Value EventHandle::record(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Stream& stream = Args(info, "record").stream(0, "stream");
    if (stream.device() != event_->device())
      throw typeError("record: 'stream' is on " + stream.device().name() +
                      " but the event is on " + event_->device().name());
    event_->record(stream);
    return info.Env().Undefined();
  });
}

Napi::Value EventHandle::synchronize(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    auto deferred = Napi::Promise::Deferred::New(info.Env());
    enqueueCompletion([&](const Completion& done) { event_->whenDone([done] { done(""); }); },
                      completion(info.Env(), deferred, nullptr));
    return deferred.Promise();
  });
}

// ---- Graph ------------------------------------------------------------------------------

Napi::Function GraphHandle::define(Napi::Env env) {
  return DefineClass(env, "Graph",
                     {InstanceMethod<&GraphHandle::launch>("launch"),
                      InstanceMethod<&GraphHandle::dispose>("dispose"),
                      InstanceAccessor<&GraphHandle::isDisposed>("disposed")});
}

Napi::Object GraphHandle::wrap(Napi::Env env, Device device, std::unique_ptr<Graph> graph) {
  Napi::Object o = data(env).graph.New({});
  GraphHandle* h = Unwrap(o);
  h->device_ = device;
  h->graph_ = std::move(graph);
  return o;
}

GraphHandle::GraphHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GraphHandle>(info) {}

Napi::Value GraphHandle::launch(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Stream& stream = Args(info, "launch").stream(0, "stream");
    if (!graph_) throw typeError("launch: the graph was disposed");
    if (stream.device() != device_)
      throw typeError("launch: 'stream' is on " + stream.device().name() +
                      " but the graph was captured on " + device_.name());
    graph_->launch(stream);
    return info.Env().Undefined();
  });
}

// Launched work holds what it needs, so disposing right after a launch is safe.
Napi::Value GraphHandle::dispose(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    graph_.reset();
    return info.Env().Undefined();
  });
}

Napi::Value GraphHandle::isDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !graph_);
}

}  // namespace sg::addon
