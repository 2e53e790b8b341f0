#include "convert.h"

#include <cmath>

#include "handles.h"

namespace sg::addon {

ArgumentError Args::typeError(const char* name, const std::string& expected) const {
  return sg::typeError(std::string(fn_) + ": '" + name + "' must be " + expected);
}

ArgumentError Args::typeErrorGot(size_t i, const char* name, const std::string& expected) const {
  return typeError(name, expected + ", got " + describeValue(info_.Env(), at(i)));
}

double Args::number(size_t i, const char* name) const {
  if (!at(i).IsNumber()) throw typeErrorGot(i, name, "a number");
  return at(i).As<Napi::Number>().DoubleValue();
}

int64_t Args::integer(size_t i, const char* name) const {
  double v = number(i, name);
  if (!std::isfinite(v) || std::floor(v) != v || std::fabs(v) > 9007199254740991.0)
    throw rangeError(std::string(fn_) + ": '" + name + "' must be an integer, got " +
                     at(i).ToString().Utf8Value());
  return static_cast<int64_t>(v);
}

bool Args::boolean(size_t i, const char* name) const {
  if (!at(i).IsBoolean()) throw typeErrorGot(i, name, "a boolean");
  return at(i).As<Napi::Boolean>().Value();
}

std::string Args::string(size_t i, const char* name) const {
  if (!at(i).IsString()) throw typeErrorGot(i, name, "a string");
  return at(i).As<Napi::String>().Utf8Value();
}

Device parseDevice(const std::string& text) {
  if (text == "cpu") return Device{DeviceKind::Cpu, 0};
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5 && text.size() < 9) {
    int index = 0;
    for (size_t k = 5; k < text.size(); ++k) {
      if (text[k] < '0' || text[k] > '9') goto bad;
      index = index * 10 + (text[k] - '0');
    }
    return Device{DeviceKind::Cuda, index};
  }
bad:
  throw sg::typeError("device must be 'cpu' or 'cuda:N', got '" + text + "'");
}

Device Args::device(size_t i, const char* name) const {
  std::string text = string(i, name);
  try {
    return parseDevice(text);
  } catch (const ArgumentError&) {
    throw typeError(name, "'cpu' or 'cuda:N', got '" + text + "'");
  }
}

DType Args::dtype(size_t i, const char* name) const {
  std::string text = string(i, name);
  if (text == "float32") return DType::Float32;
  if (text == "int32") return DType::Int32;
  throw typeError(name, "'float32' or 'int32', got '" + text + "'");
}

Shape Args::shape(size_t i, const char* name) const {
  if (!at(i).IsArray()) throw typeErrorGot(i, name, "an array of dimension sizes");
  Napi::Array a = at(i).As<Napi::Array>();
  if (a.Length() > 8)
    throw rangeError(std::string(fn_) + ": '" + name + "' has " + std::to_string(a.Length()) +
                     " dimensions, at most 8 are supported");
  Shape shape;
  double total = 1;
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value d = a.Get(k);
    double v = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1;
    if (!d.IsNumber() || !(v >= 0) || std::floor(v) != v || v > 2147483647.0)
      throw rangeError(std::string(fn_) + ": '" + name + "[" + std::to_string(k) +
                       "]' must be a non-negative integer, got " + describeValue(info_.Env(), d));
    shape.push_back(static_cast<int64_t>(v));
    total *= v;
  }
  if (total > 4294967296.0)
    throw rangeError(std::string(fn_) + ": '" + name + "' has more than 2^32 elements");
  return shape;
}

Tensor Args::tensor(size_t i, const char* name, bool optional) const {
  Napi::Value v = at(i);
  if (optional && (v.IsNull() || v.IsUndefined())) return Tensor{};
  TensorHandle* handle = TensorHandle::from(info_.Env(), v);
  if (!handle) throw typeErrorGot(i, name, optional ? "a Tensor or null" : "a Tensor");
  if (handle->disposed())
    throw sg::typeError(std::string(fn_) + ": '" + name + "' was disposed");
  return handle->tensor();
}

std::vector<Tensor> Args::tensors(size_t i, const char* name, bool optional) const {
  Napi::Value v = at(i);
  if (optional && (v.IsNull() || v.IsUndefined())) return {};
  if (!v.IsArray())
    throw typeErrorGot(i, name, optional ? "an array of Tensors or null" : "an array of Tensors");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<Tensor> out;
  out.reserve(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    const std::string at = std::string(name) + "[" + std::to_string(k) + "]";
    Napi::Value t = a.Get(k);
    TensorHandle* handle = TensorHandle::from(info_.Env(), t);
    if (!handle)
      throw typeError(at.c_str(), "a Tensor, got " + describeValue(info_.Env(), t));
    if (handle->disposed()) throw sg::typeError(std::string(fn_) + ": '" + at + "' was disposed");
    out.push_back(handle->tensor());
  }
  return out;
}

std::vector<float> Args::floats(size_t i, const char* name) const {
  if (!at(i).IsArray()) throw typeError(name, "an array of numbers");
  Napi::Array a = at(i).As<Napi::Array>();
  std::vector<float> out;
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value v = a.Get(k);
    // Finite also as a float32: 1e39 would become Infinity.
    if (!v.IsNumber() || !std::isfinite(static_cast<float>(v.As<Napi::Number>().DoubleValue())))
      throw rangeError(std::string(fn_) + ": '" + name + "[" + std::to_string(k) +
                       "]' must be a finite number, got " + describeValue(info_.Env(), v));
    out.push_back(static_cast<float>(v.As<Napi::Number>().DoubleValue()));
  }
  return out;
}

sg::Stream& Args::stream(size_t i, const char* name) const {
  return *sharedStream(i, name);
}

std::shared_ptr<sg::Stream> Args::sharedStream(size_t i, const char* name) const {
  StreamHandle* handle = StreamHandle::from(info_.Env(), at(i));
  if (!handle) throw typeErrorGot(i, name, "a Stream");
  return handle->shared();
}

sg::Event& Args::event(size_t i, const char* name) const {
  EventHandle* handle = EventHandle::from(info_.Env(), at(i));
  if (!handle) throw typeErrorGot(i, name, "an Event");
  return handle->event();
}

}  // namespace sg::addon
