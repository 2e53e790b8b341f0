// How the CPU backend's op methods (cpu_ops.cpp, cpu_conv_ops.cpp) queue an op's kernels: on
// the stream's worker, timed under the op's name while the op profile is on (core/op_profile.h).
#pragma once
#include <utility>

#include "../core/op_profile.h"
#include "cpu_runtime.h"

namespace sg::cpu_backend {

// `op` names the op in the profile: pass __func__ (the op method's name, e.g. "gemm").
template <class Body>
void enqueueOp(Stream& s, const char* op, Body body) {
  if (profile::on())
    cpu(s).enqueue(profile::timed(op, std::move(body)));
  else
    cpu(s).enqueue(std::move(body));
}

}  // namespace sg::cpu_backend
