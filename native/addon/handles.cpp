#include "handles.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "../core/stream_order.h"
#include "completion.h"
#include "convert.h"

namespace sg::addon {

// Random constants: a tag only has to differ from every other addon's.
const napi_type_tag TensorHandle::kTag = {0x5367a41e0b7d4c21ULL, 0x9e3c7f21a0d84b11ULL};
const napi_type_tag StreamHandle::kTag = {0x5367a41e0b7d4c22ULL, 0x1b8e55c3f2a94e02ULL};
const napi_type_tag EventHandle::kTag = {0x5367a41e0b7d4c23ULL, 0x7d21c9e86b0f4a93ULL};
const napi_type_tag GraphHandle::kTag = {0x5367a41e0b7d4c24ULL, 0xc4f0d3a2198e4b54ULL};

namespace {

AddonData& data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

Napi::Array shapeArray(Napi::Env env, const Shape& shape) {
  Napi::Array a = Napi::Array::New(env, shape.size());
  for (size_t k = 0; k < shape.size(); ++k) a.Set(k, Napi::Number::New(env, double(shape[k])));
  return a;
}

// The handle of class H behind `v` if `v` carries H's tag, else null.
template <class H>
H* unwrapTagged(Napi::Env env, const Napi::Value& v) {
  if (v.IsEmpty() || !v.IsObject()) return nullptr;
  bool tagged = false;
  if (napi_check_object_type_tag(env, v, &H::kTag, &tagged) != napi_ok || !tagged) return nullptr;
  void* p = nullptr;
  if (napi_unwrap(env, v, &p) != napi_ok || p == nullptr) return nullptr;
  return static_cast<H*>(p);  // ObjectWrap<H> wraps the H* itself
}

void tag(const Napi::CallbackInfo& info, const napi_type_tag& t) {
  info.This().As<Napi::Object>().TypeTag(&t);
}

// The C callback of a prototype method or accessor: checks that `this` is a live handle of
// class H before anything touches it as one. info.Data() is the qualified name for messages.
template <class H, Napi::Value (H::*Method)(const Napi::CallbackInfo&)>
napi_value member(napi_env env, napi_callback_info cb) {
  try {
    Napi::CallbackInfo info(env, cb);
    const char* name = static_cast<const char*>(info.Data());
    return guarded(info, [&]() -> Napi::Value {
      H* self = unwrapTagged<H>(info.Env(), info.This());
      if (!self)
        throw sg::typeError(std::string(name) + ": 'this' must be " + H::kClass + ", got " +
                            describeValue(info.Env(), info.This()));
      return (self->*Method)(info);
    });
  } catch (const Napi::Error& e) {  // from CallbackInfo
    throwSafely(env, e);
  } catch (...) {  // nothing may unwind into Node.js
  }
  return nullptr;
}

template <class H, Napi::Value (H::*Method)(const Napi::CallbackInfo&)>
Napi::ClassPropertyDescriptor<H> method(const char* name, const char* qualified) {
  return napi_property_descriptor{name,    nullptr,     member<H, Method>,
                                  nullptr, nullptr,     nullptr,
                                  napi_default, const_cast<char*>(qualified)};
}

template <class H, Napi::Value (H::*Getter)(const Napi::CallbackInfo&)>
Napi::ClassPropertyDescriptor<H> getter(const char* name, const char* qualified) {
  return napi_property_descriptor{name,    nullptr, nullptr,
                                  member<H, Getter>, nullptr, nullptr,
                                  napi_default, const_cast<char*>(qualified)};
}

// With the stream-order checker on: what the host knows once a Promise settles, the work it
// waited for having all run, whether it failed or not (empty: nothing to learn).
std::function<void()> teaching(std::shared_ptr<order::Knowledge> k) {
  if (!k) return nullptr;
  return [k = std::move(k)] { order::hostLearns(*k); };
}

// A Promise settled when everything enqueued on `stream` so far has run.
Napi::Value afterStream(Napi::Env env, Stream& stream, Resolver resolveWith) {
  std::function<void()> learn;
  if (order::checking() && !stream.capturing()) learn = teaching(order::streamKnowledge(stream));
  napi_deferred deferred = nullptr;
  Napi::Promise promise = newPromise(env, &deferred);
  enqueueCompletion([&](const Completion& done) { stream.whenDone(done); },
                    completion(env, deferred, std::move(resolveWith), std::move(learn)));
  return promise;
}

// Handles made by native code pass a token that JavaScript cannot forge: the address of the
// value being wrapped, compared with the one this thread is wrapping right now.
thread_local const void* tWrapping = nullptr;

struct WrappingScope {
  explicit WrappingScope(const void* p) { tWrapping = p; }
  ~WrappingScope() { tWrapping = nullptr; }
};

bool isToken(const Napi::Value& v) {
  return tWrapping != nullptr && v.IsExternal() && v.As<Napi::External<void>>().Data() == tWrapping;
}

}  // namespace

std::string describeValue(Napi::Env env, const Napi::Value& v) {
  if (v.IsEmpty()) return "undefined";
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return v.As<Napi::Boolean>().Value() ? "true" : "false";
    case napi_number: return v.ToString().Utf8Value();
    case napi_string: {
      std::string s = v.As<Napi::String>().Utf8Value();
      if (s.size() > 40) s = s.substr(0, 40) + "...";
      return "'" + s + "'";
    }
    case napi_symbol: return "a symbol";
    case napi_function: return "a function";
    case napi_external: return "an external";
    case napi_bigint: return "a bigint";
    case napi_object: break;
  }
  if (unwrapTagged<TensorHandle>(env, v)) return TensorHandle::kClass;
  if (unwrapTagged<StreamHandle>(env, v)) return StreamHandle::kClass;
  if (unwrapTagged<EventHandle>(env, v)) return EventHandle::kClass;
  if (unwrapTagged<GraphHandle>(env, v)) return GraphHandle::kClass;
  if (v.IsArray()) return "an array";
  if (v.IsTypedArray()) return "a typed array";
  return "an object";
}

// The bytes of `data`, a typed array that must match `t`'s dtype and size (for `op`'s messages).
static const void* typedArrayBytes(Napi::Env env, Args& args, Napi::Value data,
                                   const Tensor& t, const std::string& op) {
  napi_typedarray_type type;
  size_t length = 0, offset = 0;
  void* bytes = nullptr;
  napi_value buffer = nullptr;
  if (napi_get_typedarray_info(env, data, &type, &length, &bytes, &buffer, &offset) != napi_ok)
    throw Napi::Error::New(env);
  napi_typedarray_type want = t.dtype == DType::Float32 ? napi_float32_array : napi_int32_array;
  if (type != want)
    throw args.typeError("data", t.dtype == DType::Float32 ? "a Float32Array for float32"
                                                           : "an Int32Array for int32");
  bool plain = false;
  if (napi_is_arraybuffer(env, buffer, &plain) != napi_ok || !plain)
    throw args.typeError("data", "backed by an ArrayBuffer, got one backed by a "
                                 "SharedArrayBuffer (copy it into a new typed array first)");
  if (int64_t(length) != t.numel())
    throw rangeError(op + ": 'data' has " + std::to_string(length) + " elements but shape " +
                     shapeString(t.shape) + " needs " + std::to_string(t.numel()));
  return bytes;
}

// ---- Tensor -----------------------------------------------------------------------------

Napi::Function TensorHandle::define(Napi::Env env) {
  using H = TensorHandle;
  return DefineClass(env, "Tensor",
                     {getter<H, &H::shape>("shape", "Tensor.shape"),
                      getter<H, &H::dtype>("dtype", "Tensor.dtype"),
                      getter<H, &H::device>("device", "Tensor.device"),
                      getter<H, &H::isDisposed>("disposed", "Tensor.disposed"),
                      method<H, &H::dispose>("dispose", "Tensor.dispose"),
                      method<H, &H::reshape>("reshape", "Tensor.reshape"),
                      method<H, &H::view>("view", "Tensor.view"),
                      method<H, &H::read>("read", "Tensor.read"),
                      method<H, &H::write>("write", "Tensor.write"),
                      method<H, &H::sharesStorage>("sharesStorage", "Tensor.sharesStorage")});
}

TensorHandle* TensorHandle::from(Napi::Env env, const Napi::Value& v) {
  return unwrapTagged<TensorHandle>(env, v);
}

Napi::Object TensorHandle::wrap(Napi::Env env, Tensor tensor) {
  WrappingScope scope(&tensor);
  return data(env).tensor.New({Napi::External<Tensor>::New(env, &tensor)});
}

// new Tensor(shape, dtype, device, init): init is a typed array of matching type and length,
// 'zeros', or undefined (contents unspecified: for outputs that an op overwrites).
TensorHandle::TensorHandle(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<TensorHandle>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (isToken(info[0])) {  // from wrap()
    tensor_ = *static_cast<const Tensor*>(tWrapping);
    tWrapping = nullptr;
    tag(info, kTag);
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
    bool zeros = false;
    if (init.IsTypedArray()) {
      source = typedArrayBytes(env, args, init, t, "Tensor");
    } else if (init.IsString() && init.As<Napi::String>().Utf8Value() == "zeros") {
      zeros = true;
    } else if (!init.IsUndefined()) {
      throw args.typeError("data", "a typed array, 'zeros' or undefined, got " +
                                       describeValue(env, init));
    }
    // Beyond the device's memory the allocation cannot succeed; on the CPU it might seem
    // to (overcommit), and the first touch would get the process killed.
    const size_t capacity = backend.memoryBytes();
    if (t.bytes() > capacity)
      throw rangeError("Tensor: 'shape' " + shapeString(shape) + " needs " +
                       std::to_string(t.bytes()) + " bytes, more than the " +
                       std::to_string(capacity) + " bytes of memory of " + device.name());
    t.storage = backend.allocate(t.bytes());
    if (t.bytes() > 0) {
      if (source) backend.upload(t, source);
      if (zeros) backend.zero(t);
    }
    tensor_ = std::move(t);
    accounted_ = int64_t(tensor_.bytes());
    int64_t total = 0;
    (void)napi_adjust_external_memory(env, accounted_, &total);
    tag(info, kTag);
    return env.Undefined();
  });
}

TensorHandle::~TensorHandle() { release(); }

void TensorHandle::release() {
  tensor_.storage.reset();
  if (accounted_) {
    int64_t total = 0;
    (void)napi_adjust_external_memory(env_, -accounted_, &total);  // also safe at teardown
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
  Tensor other = Args(info, "sharesStorage").tensor(0, "other");
  return Napi::Boolean::New(info.Env(), !disposed() && overlaps(*other.storage, *tensor_.storage));
}

// view(offset, shape): a new handle on the numel(shape) elements from element `offset` on.
// The offset is a multiple of 64 elements (256 bytes), so that a view is aligned like an
// allocation (vectorised kernels rely on it).
Napi::Value TensorHandle::view(const Napi::CallbackInfo& info) {
  Args args(info, "view");
  if (disposed()) throw typeError("view: the tensor was disposed");
  const int64_t offset = args.integer(0, "offset");
  Shape shape = args.shape(1, "shape");
  constexpr int64_t kViewAlign = 64;
  if (offset < 0 || offset % kViewAlign != 0)
    throw rangeError("view: 'offset' must be a multiple of " + std::to_string(kViewAlign) +
                     " elements, at least 0, got " + std::to_string(offset));
  if (offset + numel(shape) > tensor_.numel())
    throw rangeError("view: 'offset' " + std::to_string(offset) + " and 'shape' " +
                     shapeString(shape) + " reach past the tensor's " +
                     std::to_string(tensor_.numel()) + " elements");
  Tensor v = tensor_;
  v.shape = shape;
  v.storage = std::make_shared<Storage>(tensor_.storage, size_t(offset) * dtypeSize(v.dtype),
                                        v.bytes());
  return wrap(info.Env(), v);
}

// reshape(shape): a new handle on the same storage.
Napi::Value TensorHandle::reshape(const Napi::CallbackInfo& info) {
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
}

// read(stream?): a Promise of a new Float32Array/Int32Array with the contents once `stream`
// (default: the device's default stream) reaches this point.
Napi::Value TensorHandle::read(const Napi::CallbackInfo& info) {
  Args args(info, "read");
  if (disposed()) throw typeError("read: the tensor was disposed");
  Stream& stream = info[0].IsUndefined() ? backendFor(tensor_.device()).defaultStream()
                                         : args.stream(0, "stream");
  if (stream.device() != tensor_.device())
    throw typeError("read: 'stream' is on " + stream.device().name() +
                    " but the tensor is on " + tensor_.device().name());
  auto host = std::make_shared<std::vector<uint8_t>>(tensor_.bytes());
  if (order::checking() && !host->empty())
    order::enqueue("read", stream, {{tensor_.storage, tensor_.dtype, tensor_.shape, "this", false}});
  if (!host->empty()) backendFor(tensor_.device()).download(stream, tensor_, host->data(), host);
  DType dtype = tensor_.dtype;
  size_t count = size_t(tensor_.numel());
  return afterStream(info.Env(), stream, [host, dtype, count](Napi::Env env) -> Napi::Value {
    auto buffer = Napi::ArrayBuffer::New(env, host->size());
    if (!host->empty()) std::memcpy(buffer.Data(), host->data(), host->size());
    if (dtype == DType::Float32) return Napi::Float32Array::New(env, count, buffer, 0);
    return Napi::Int32Array::New(env, count, buffer, 0);
  });
}

// write(data, stream?): copies `data` (a typed array of the tensor's dtype and size) into the
// tensor once `stream` (default: the device's default stream) reaches this point; `data` is
// copied before this returns, so the caller may change it at once.
Napi::Value TensorHandle::write(const Napi::CallbackInfo& info) {
  Args args(info, "write");
  if (disposed()) throw typeError("write: the tensor was disposed");
  if (!info[0].IsTypedArray())
    throw args.typeError("data", std::string(tensor_.dtype == DType::Float32 ? "a Float32Array"
                                                                             : "an Int32Array") +
                                     ", got " + describeValue(info.Env(), info[0]));
  const void* bytes = typedArrayBytes(info.Env(), args, info[0], tensor_, "write");
  Stream& stream = info[1].IsUndefined() ? backendFor(tensor_.device()).defaultStream()
                                         : args.stream(1, "stream");
  if (stream.device() != tensor_.device())
    throw typeError("write: 'stream' is on " + stream.device().name() +
                    " but the tensor is on " + tensor_.device().name());
  if (tensor_.bytes() == 0) return info.Env().Undefined();
  if (order::checking())
    order::enqueue("write", stream,
                   {{tensor_.storage, tensor_.dtype, tensor_.shape, "this", true}});
  backendFor(tensor_.device()).uploadAsync(stream, tensor_, bytes);
  return info.Env().Undefined();
}

// ---- Stream -----------------------------------------------------------------------------

Napi::Function StreamHandle::define(Napi::Env env) {
  using H = StreamHandle;
  return DefineClass(env, "Stream",
                     {getter<H, &H::device>("device", "Stream.device"),
                      method<H, &H::wait>("wait", "Stream.wait"),
                      method<H, &H::synchronize>("synchronize", "Stream.synchronize"),
                      method<H, &H::cancel>("cancel", "Stream.cancel")});
}

StreamHandle* StreamHandle::from(Napi::Env env, const Napi::Value& v) {
  return unwrapTagged<StreamHandle>(env, v);
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
    tag(info, kTag);
    return info.Env().Undefined();
  });
}

Napi::Value StreamHandle::device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), stream_->device().name());
}

Napi::Value StreamHandle::wait(const Napi::CallbackInfo& info) {
  Event& event = Args(info, "wait").event(0, "event");
  if (event.device() != stream_->device())
    throw typeError("wait: 'event' is on " + event.device().name() + " but the stream is on " +
                    stream_->device().name());
  stream_->wait(event);
  if (order::checking()) order::waited(*stream_, event);
  return info.Env().Undefined();
}

Napi::Value StreamHandle::synchronize(const Napi::CallbackInfo& info) {
  return afterStream(info.Env(), *stream_, nullptr);
}

// cancel() -> the number of queued ops dropped (see Stream::cancelQueued).
Napi::Value StreamHandle::cancel(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(stream_->cancelQueued()));
}

// ---- Event ------------------------------------------------------------------------------

Napi::Function EventHandle::define(Napi::Env env) {
  using H = EventHandle;
  return DefineClass(env, "Event",
                     {getter<H, &H::device>("device", "Event.device"),
                      method<H, &H::record>("record", "Event.record"),
                      method<H, &H::synchronize>("synchronize", "Event.synchronize")});
}

EventHandle* EventHandle::from(Napi::Env env, const Napi::Value& v) {
  return unwrapTagged<EventHandle>(env, v);
}

EventHandle::EventHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EventHandle>(info) {
  guarded(info, [&]() -> Napi::Value {
    event_ = backendFor(Args(info, "Event").device(0, "device")).createEvent();
    tag(info, kTag);
    return info.Env().Undefined();
  });
}

Napi::Value EventHandle::device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), event_->device().name());
}

Napi::Value EventHandle::record(const Napi::CallbackInfo& info) {
  Stream& stream = Args(info, "record").stream(0, "stream");
  if (stream.device() != event_->device())
    throw typeError("record: 'stream' is on " + stream.device().name() +
                    " but the event is on " + event_->device().name());
  event_->record(stream);
  if (order::checking()) order::recorded(*event_, stream);
  return info.Env().Undefined();
}

Napi::Value EventHandle::synchronize(const Napi::CallbackInfo& info) {
  napi_deferred deferred = nullptr;
  Napi::Promise promise = newPromise(info.Env(), &deferred);
  std::function<void()> learn;
  if (order::checking()) learn = teaching(order::eventKnowledge(*event_));
  enqueueCompletion([&](const Completion& done) { event_->whenDone([done] { done(""); }); },
                    completion(info.Env(), deferred, nullptr, std::move(learn)));
  return promise;
}

// ---- Graph ------------------------------------------------------------------------------

namespace {
// The token of GraphHandle's constructor (its address); graphs are never made by `new`.
char gGraphToken = 0;

Napi::Object newGraphObject(Napi::Env env) {
  WrappingScope scope(&gGraphToken);
  return data(env).graph.New({Napi::External<char>::New(env, &gGraphToken)});
}
}  // namespace

Napi::Function GraphHandle::define(Napi::Env env) {
  using H = GraphHandle;
  return DefineClass(env, "Graph",
                     {method<H, &H::launch>("launch", "Graph.launch"),
                      method<H, &H::dispose>("dispose", "Graph.dispose"),
                      getter<H, &H::isDisposed>("disposed", "Graph.disposed"),
                      getter<H, &H::isCapturing>("capturing", "Graph.capturing")});
}

GraphHandle* GraphHandle::from(Napi::Env env, const Napi::Value& v) {
  return unwrapTagged<GraphHandle>(env, v);
}

GraphHandle::GraphHandle(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<GraphHandle>(info), env_(info.Env()) {
  if (!isToken(info[0])) {
    (void)napi_throw_type_error(info.Env(), kCodeType,
                                "Graph: graphs are made by beginCapture() and endCapture(), not "
                                "by new");
    return;
  }
  tWrapping = nullptr;
  tag(info, kTag);
}

GraphHandle::~GraphHandle() { discardCapture(); }

Napi::Object GraphHandle::begin(Napi::Env env, std::shared_ptr<Stream> origin) {
  Napi::Object o = newGraphObject(env);
  GraphHandle* h = Unwrap(o);
  backendFor(origin->device()).beginCapture(*origin);
  if (order::checking()) order::captureBegun(*origin);
  h->device_ = origin->device();
  h->capturing_ = std::move(origin);
  data(env).capturing.push_back(h);
  return o;
}

Napi::Object GraphHandle::end(Napi::Env env, Stream& origin) {
  auto& open = data(env).capturing;
  auto it = std::find_if(open.begin(), open.end(),
                         [&](GraphHandle* h) { return h->capturing_.get() == &origin; });
  if (it == open.end()) throw std::runtime_error("endCapture: no capture was begun on this stream");
  GraphHandle* h = *it;
  open.erase(it);
  std::shared_ptr<Stream> stream = std::move(h->capturing_);
  // The backend discards the capture if it refuses it; the Graph is then disposed.
  std::unique_ptr<Graph> graph;
  try {
    graph = backendFor(stream->device()).endCapture(*stream);
  } catch (...) {
    if (order::checking()) order::captureEnded(*stream, nullptr);
    throw;
  }
  if (order::checking()) order::captureEnded(*stream, graph.get());
  Napi::Object o = h->Value();
  if (o.IsEmpty()) {  // collected, its finalizer not yet run: the work goes to a new Graph
    o = newGraphObject(env);
    h = Unwrap(o);
    h->device_ = stream->device();
  }
  h->graph_ = std::move(graph);
  return o;
}

void GraphHandle::discardCapture() noexcept {
  if (!capturing_) return;
  void* raw = nullptr;
  if (napi_get_instance_data(env_, &raw) == napi_ok && raw != nullptr) {
    auto& open = static_cast<AddonData*>(raw)->capturing;
    open.erase(std::remove(open.begin(), open.end(), this), open.end());
  }
  try {
    std::shared_ptr<Stream> stream = std::move(capturing_);
    if (order::checking()) order::captureEnded(*stream, nullptr);
    backendFor(stream->device()).endCapture(*stream);  // the recorded work is dropped unrun
  } catch (...) {  // a refused capture is discarded all the same
  }
  capturing_.reset();
}

Napi::Value GraphHandle::launch(const Napi::CallbackInfo& info) {
  Stream& stream = Args(info, "launch").stream(0, "stream");
  if (capturing_) throw typeError("launch: the graph is still being captured (endCapture first)");
  if (!graph_) throw typeError("launch: the graph was disposed");
  if (stream.device() != device_)
    throw typeError("launch: 'stream' is on " + stream.device().name() +
                    " but the graph was captured on " + device_.name());
  if (order::checking()) order::launching(*graph_, stream);
  graph_->launch(stream);
  return info.Env().Undefined();
}

// Launched work holds what it needs, so disposing right after a launch is safe. Disposing of
// a graph that is still capturing discards the capture.
Napi::Value GraphHandle::dispose(const Napi::CallbackInfo& info) {
  discardCapture();
  graph_.reset();
  return info.Env().Undefined();
}

Napi::Value GraphHandle::isDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !graph_ && !capturing_);
}

Napi::Value GraphHandle::isCapturing(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), capturing_ != nullptr);
}

}  // namespace sg::addon
