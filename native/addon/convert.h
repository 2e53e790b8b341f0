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

// The stable codes of ts/errors.ts, set on every error the addon raises.
constexpr const char* kCodeType = "ERR_SYNTHGRAD_INVALID_ARG_TYPE";
constexpr const char* kCodeRange = "ERR_SYNTHGRAD_INVALID_ARG_VALUE";
constexpr const char* kCodeNative = "ERR_SYNTHGRAD_NATIVE";

// Throws `error` in JavaScript, with a code when it has none (a TypeError from node-addon-api's
// own conversions gets the argument-type code, any other the native one). Through the C API, whose failure is a status: while a Worker
// terminates JavaScript cannot run, napi_throw fails, and node-addon-api would turn that
// failure into a C++ exception, which thrown out of a callback aborts the process.
inline void throwSafely(napi_env env, const Napi::Error& error) noexcept {
  try {
    napi_value value = error.Value();
    if (value == nullptr) return;
    bool hasCode = false;
    napi_value typeErrorCtor = nullptr, global = nullptr;
    bool isTypeError = false;
    if (napi_get_global(env, &global) == napi_ok &&
        napi_get_named_property(env, global, "TypeError", &typeErrorCtor) == napi_ok)
      (void)napi_instanceof(env, value, typeErrorCtor, &isTypeError);
    if (napi_has_named_property(env, value, "code", &hasCode) == napi_ok && !hasCode) {
      napi_value code = nullptr;
      const char* text = isTypeError ? kCodeType : kCodeNative;
      if (napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &code) == napi_ok)
        (void)napi_set_named_property(env, value, "code", code);
    }
    (void)napi_throw(env, value);
  } catch (...) {
  }
}

// Runs `body`; an ArgumentError becomes a TypeError/RangeError, anything else an Error.
// Never throws: every failure becomes a JavaScript exception (when JavaScript can still run).
template <typename Body>
Napi::Value guarded(const Napi::CallbackInfo& info, Body&& body) noexcept {
  napi_env env = info.Env();
  try {
    return body();
  } catch (const Napi::Error& e) {
    throwSafely(env, e);
  } catch (const ArgumentError& e) {
    if (e.kind() == ArgumentError::Kind::Type)
      (void)napi_throw_type_error(env, kCodeType, e.what());
    else
      (void)napi_throw_range_error(env, kCodeRange, e.what());
  } catch (const std::exception& e) {
    (void)napi_throw_error(env, kCodeNative, e.what());
  } catch (...) {
    (void)napi_throw_error(env, kCodeNative, "synthgrad: unexpected native error");
  }
  return Napi::Value();  // undefined
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
