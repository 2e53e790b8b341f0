// Error checking for the CUDA backend: every CUDA runtime call goes through CUDA_CHECK.
//
// A failure becomes a std::runtime_error naming the call, the file, the line and the CUDA
// error. The runtime's per-thread "last error" is cleared (cudaGetLastError) so that a later,
// unrelated launch check does not report it again; sticky errors (a faulted kernel) cannot
// be cleared and keep failing every later call, which is the right outcome.
// Kernel launches are written SG_LAUNCH(grid, block, sharedBytes, stream, kernel)(args...)
// (the <<<...>>> launch under nvcc; the CPU emulation of test/cuda/host_emulation defines
// its own SG_LAUNCH that runs the kernel there, so the launchers' grid sizes, tile choices
// and argument packing are checked without a GPU) and checked with CUDA_CHECK_LAUNCH() after.
// Out of memory in the device allocator is reported separately (throwOutOfMemory) with the
// size and the device, as "CUDA out of memory allocating N bytes on cuda:I".
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>

namespace sg::cuda {

inline std::string cudaErrorText(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
}

[[noreturn]] inline void throwCudaError(cudaError_t e, const char* call, const char* file,
                                        int line) {
  (void)cudaGetLastError();  // clear the error state where it is not sticky
  throw std::runtime_error(std::string("CUDA error: ") + call + " failed at " + file + ":" +
                           std::to_string(line) + ": " + cudaErrorText(e));
}

inline void checkCuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess) throwCudaError(e, call, file, line);
}

[[noreturn]] inline void throwOutOfMemory(size_t bytes, int device, const std::string& detail) {
  (void)cudaGetLastError();
  throw std::runtime_error("CUDA out of memory allocating " + std::to_string(bytes) +
                           " bytes on cuda:" + std::to_string(device) +
                           (detail.empty() ? "" : " (" + detail + ")"));
}

}  // namespace sg::cuda

#define CUDA_CHECK(call) ::sg::cuda::checkCuda((call), #call, __FILE__, __LINE__)
#ifndef SG_LAUNCH  // the host emulation's cuda_runtime.h defines its own
#define SG_LAUNCH(grid, block, sharedBytes, stream, ...) \
  __VA_ARGS__<<<(grid), (block), (sharedBytes), (stream)>>>
#endif
#define CUDA_CHECK_LAUNCH() \
  ::sg::cuda::checkCuda(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
