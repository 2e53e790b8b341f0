// The fake CUDA runtime's controls (fake_runtime.cpp): what a test of cuda_backend.cu on the
// CPU needs beyond the runtime API of cuda_runtime.h.
#pragma once
#include <cuda_runtime.h>  // the emulation header of this folder

#include <cstddef>
#include <vector>

namespace fake {

// Routes kernel launches (SG_LAUNCH) to their streams' queues. Call once, first.
void install();
// Holds (true) or releases a stream's queue: its work stays pending meanwhile.
void stall(cudaStream_t stream, bool on);
// A device fault: nothing queued runs any more, every later call returns `error`.
void fail(cudaError_t error);
// Calls the backend should never make: a synchronisation, a stream destroy or a cudaFree
// while a capture is open (each also invalidates the capture).
int misuses();
int frees();
// Host functions enqueued so far (cudaLaunchHostFunc calls).
int hostFunctions();
void setMemoryLimit(size_t bytes);
size_t memoryInUse();
// Live streams, oldest first.
std::vector<cudaStream_t> streams();

}  // namespace fake
