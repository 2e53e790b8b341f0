// The CPU backend: each stream is a FIFO of tasks served by the process-wide pool of
// core/parallel.h; ops run the kernels of kernels.h there (split with parallelFor when large).
#pragma once
#include "../core/backend.h"

namespace sg {

// The process-wide CPU backend.
Backend& cpuBackend();
// Registers it as the provider of the cpu device (core/backend.h); the addon calls this.
void registerCpuBackend();

}  // namespace sg
