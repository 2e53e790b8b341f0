// The backend registry: maps a device to the backend that its kind registered (see
// BackendProvider in backend.h). Registration happens when the addon loads; lookups happen on
// every op call, so they are one atomic load, without a lock.
#include <atomic>

#include "backend.h"
#include "error.h"

namespace sg {
namespace {

std::atomic<const BackendProvider*>& slot(DeviceKind kind) {
  static std::atomic<const BackendProvider*> slots[2] = {{nullptr}, {nullptr}};
  return slots[kind == DeviceKind::Cpu ? 0 : 1];
}

const BackendProvider* provider(DeviceKind kind) {
  return slot(kind).load(std::memory_order_acquire);
}

}  // namespace

void registerBackend(DeviceKind kind, const BackendProvider* p) {
  slot(kind).store(p, std::memory_order_release);
}

bool builtWithCuda() { return provider(DeviceKind::Cuda) != nullptr; }

int cudaDeviceCount() {
  const BackendProvider* p = provider(DeviceKind::Cuda);
  return p ? p->deviceCount() : 0;
}

std::string cudaDeviceError() {
  const BackendProvider* p = provider(DeviceKind::Cuda);
  return p && p->deviceError ? p->deviceError() : "";
}

void setCudaGemmTf32(bool enabled) {
  const BackendProvider* p = provider(DeviceKind::Cuda);
  if (p && p->setGemmTf32)
    p->setGemmTf32(enabled);
  else if (enabled)
    throw rangeError("gemmTf32: this build of synthgrad has no CUDA backend");
}

bool cudaGemmTf32() {
  const BackendProvider* p = provider(DeviceKind::Cuda);
  return p && p->gemmTf32 ? p->gemmTf32() : false;
}

Backend& backendFor(Device device) {
  if (device.kind == DeviceKind::Cpu) {
    if (device.index != 0) throw rangeError("device: there is one cpu device, index 0");
    const BackendProvider* cpu = provider(DeviceKind::Cpu);
    if (!cpu) throw std::logic_error("synthgrad: no cpu backend is registered");
    return cpu->backend(0);
  }
  const BackendProvider* cuda = provider(DeviceKind::Cuda);
  const int count = cuda ? cuda->deviceCount() : 0;
  if (device.index < 0 || device.index >= count) {
    std::string why = cuda ? std::to_string(count) + " CUDA device(s) present"
                           : "this build of synthgrad has no CUDA backend";
    throw rangeError("device: cuda:" + std::to_string(device.index) + " is not available (" +
                     why + ")");
  }
  return cuda->backend(device.index);
}

}  // namespace sg
