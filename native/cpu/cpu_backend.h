// The CPU backend: each stream is a worker thread with a FIFO of tasks; ops run the kernels
// of kernels.h on that thread (and on the shared pool of parallel.h when they are large).
#pragma once
#include "../core/backend.h"

namespace sg {

// The process-wide CPU backend.
Backend& cpuBackend();
// Registers it as the provider of the cpu device (core/backend.h); the addon calls this.
void registerCpuBackend();

}  // namespace sg
