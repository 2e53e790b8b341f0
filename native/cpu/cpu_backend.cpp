// The CPU backend object and its registration with core (core/backend.h). Its parts are in
// cpu_allocator.cpp, cpu_streams.cpp, cpu_graphs.cpp and cpu_ops.cpp; cpu_runtime.h says
// which is which.
#include "cpu_backend.h"

#include "cpu_runtime.h"

namespace sg {

Backend& cpuBackend() {
  static cpu_backend::CpuBackend* backend = new cpu_backend::CpuBackend();
  return *backend;
}

void registerCpuBackend() {
  static const BackendProvider provider{
      [] { return 1; }, nullptr, [](int) -> Backend& { return cpuBackend(); }, nullptr, nullptr};
  registerBackend(DeviceKind::Cpu, &provider);
}

}  // namespace sg
