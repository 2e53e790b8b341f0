#pragma once
#include <napi.h>

namespace sg::addon {

// Adds the op functions (gemm, addBias, ...) to `ops`.
void registerOps(Napi::Env env, Napi::Object ops);

}  // namespace sg::addon
