// The op front end: checks every argument (dtype, device, shape, aliasing rules) and then
// enqueues the op on the stream's backend. A bad argument throws an ArgumentError that names
// the op, the argument and what was expected; nothing is enqueued then.
#pragma once
#include "backend.h"

namespace sg::ops {

#include "gen/ops.inc"

}  // namespace sg::ops
