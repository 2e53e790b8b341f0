// JavaScript values -> plain C++ values, on the main thread only. Every conversion checks its
// argument and throws sg::ArgumentError naming the function and the argument; `guarded`
// turns any C++ exception into a JavaScript exception, so bad input never crashes Node.js.
#pragma once
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../core/error.h"

namespace sg::addon {

// Runs `body`; an ArgumentError becomes a TypeError/RangeError, anything else an Error.
template <typename Body>
Napi::Value guarded(const Napi::CallbackInfo& info, Body&& body) {
  Napi::Env env = info.Env();
  try {
    return body();
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  } catch (const ArgumentError& e) {
    if (e.kind() == ArgumentError::Kind::Type)
      Napi::TypeError::New(env, e.what()).ThrowAsJavaScriptException();
    else
      Napi::RangeError::New(env, e.what()).ThrowAsJavaScriptException();
  } catch (const std::exception& e) {
    Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// The argument list of one native function, for messages like "gemm: 'alpha' must be ...".
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn) : info_(info), fn_(fn) {}

  const Napi::CallbackInfo& info() const { return info_; }
  const char* fn() const { return fn_; }
  Napi::Value at(size_t i) const { return info_[i]; }

  double number(size_t i, const char* name) const;
  int64_t integer(size_t i, const char* name) const;
  bool boolean(size_t i, const char* name) const;
  std::string string(size_t i, const char* name) const;
  Device device(size_t i, const char* name) const;
  DType dtype(size_t i, const char* name) const;
  Shape shape(size_t i, const char* name) const;
  // A live tensor; `optional` accepts null/undefined and returns an empty Tensor.
  Tensor tensor(size_t i, const char* name, bool optional = false) const;
  // An array of live tensors; `optional` accepts null/undefined as an empty list.
  std::vector<Tensor> tensors(size_t i, const char* name, bool optional = false) const;
  std::vector<float> floats(size_t i, const char* name) const;
  sg::Stream& stream(size_t i, const char* name) const;
  // The stream with shared ownership (for what must keep it alive).
  std::shared_ptr<sg::Stream> sharedStream(size_t i, const char* name) const;
  sg::Event& event(size_t i, const char* name) const;

  ArgumentError typeError(const char* name, const std::string& expected) const;
  // "fn: 'name' must be <expected>, got <what argument i is>"
  ArgumentError typeErrorGot(size_t i, const char* name, const std::string& expected) const;

 private:
  const Napi::CallbackInfo& info_;
  const char* fn_;
};

Device parseDevice(const std::string& text);

}  // namespace sg::addon
