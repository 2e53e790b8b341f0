// Maps a device to its backend.
#include "backend.h"

#include "../cpu/cpu_backend.h"
#include "error.h"
#ifdef SYNTHGRAD_WITH_CUDA
#include "../../cuda/cuda_backend.h"
#endif

namespace sg {

bool builtWithCuda() {
#ifdef SYNTHGRAD_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cudaDeviceCount() {
#ifdef SYNTHGRAD_WITH_CUDA
  return cuda::deviceCount();
#else
  return 0;
#endif
}

std::string cudaDeviceError() {
#ifdef SYNTHGRAD_WITH_CUDA
  return cuda::deviceCountError();
#else
  return "";
#endif
}

void setCudaGemmTf32(bool enabled) {
#ifdef SYNTHGRAD_WITH_CUDA
  cuda::setGemmTf32(enabled);
#else
  if (enabled) throw rangeError("gemmTf32: this build of synthgrad has no CUDA backend");
#endif
}

bool cudaGemmTf32() {
#ifdef SYNTHGRAD_WITH_CUDA
  return cuda::gemmTf32();
#else
  return false;
#endif
}

Backend& backendFor(Device device) {
  if (device.kind == DeviceKind::Cpu) {
    if (device.index != 0) throw rangeError("device: there is one cpu device, index 0");
    return cpuBackend();
  }
  int count = cudaDeviceCount();
  if (device.index < 0 || device.index >= count) {
    std::string why = builtWithCuda() ? std::to_string(count) + " CUDA device(s) present"
                                      : "this build of synthgrad has no CUDA backend";
    throw rangeError("device: cuda:" + std::to_string(device.index) + " is not available (" +
                     why + ")");
  }
#ifdef SYNTHGRAD_WITH_CUDA
  return cuda::backend(device.index);
#else
  throw rangeError("device: no CUDA backend");
#endif
}

}  // namespace sg
