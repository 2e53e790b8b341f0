// The CUDA backend's entry points, the only CUDA names the addon sees (core sees none: it
// reaches the backend through the registry).
// This header is plain C++ (no CUDA types), so native/ compiles without nvcc.
#pragma once
#include "../native/core/backend.h"

namespace sg::cuda {

// Number of usable CUDA devices (0 when there is no driver or no device; never throws).
int deviceCount();
// cudaGetDeviceCount's error when it failed, as "cudaErrorName (description)"; "" when it
// succeeded. Never throws.
std::string deviceCountError();
// The backend of device `index` (created on first use). 0 <= index < deviceCount().
Backend& backend(int index);
// The TF32 tensor-core SGEMM switch (defined in gemm.cu; see gemm.cuh).
void setGemmTf32(bool enabled);
bool gemmTf32();
// The cudaStream_t of `s`, a stream of a cuda device, as an opaque pointer: for the NCCL
// transport (native/nccl/), which enqueues its sends and receives on a module's stream.
void* streamHandle(Stream& s);
// Registers the functions above as the provider of the cuda devices (core/backend.h); the
// addon calls this when the build has the CUDA backend.
void registerCudaBackend();

}  // namespace sg::cuda
