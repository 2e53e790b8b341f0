// The CPU backend's memory: a caching host allocator and the device's memory size.
// Training allocates the same sizes every step; reusing freed blocks avoids the page faults
// of fresh large mallocs. Blocks are 64-byte aligned for the SIMD kernels.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "cpu_runtime.h"

namespace sg::cpu_backend {
namespace {

class HostPool {
 public:
  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(m_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::runtime_error("out of host memory allocating " + std::to_string(bytes) +
                                     " bytes");
    return p;
  }

  void give(void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(m_);
    if (cached_ + bytes > kMaxCached) {
      std::free(p);
      return;
    }
    free_[bytes].push_back(p);
    cached_ += bytes;
  }

  // Sizes are rounded so that nearby requests share blocks.
  static size_t roundUp(size_t bytes) {
    if (bytes <= 4096) return std::max<size_t>(64, (bytes + 63) / 64 * 64);
    size_t step = 4096;
    while (step * 16 < bytes) step *= 2;  // at most ~1/16 wasted
    return (bytes + step - 1) / step * step;
  }

 private:
  static constexpr size_t kMaxCached = size_t(2) << 30;
  std::mutex m_;
  std::map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

HostPool& hostPool() {
  static HostPool* pool = new HostPool();  // outlives static teardown; freed blocks may arrive late
  return *pool;
}
// Physical memory, or less where a cgroup (a container) limits this process's memory.
// SYNTHGRAD_CPU_MEMORY=<bytes> sets it (a limit the process cannot see, or tests).
size_t hostMemoryBytes() {
  if (const char* forced = std::getenv("SYNTHGRAD_CPU_MEMORY")) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(forced, &end, 10);
    if (end != forced && *end == '\0' && v > 0) return static_cast<size_t>(v);
  }
  const long pages = sysconf(_SC_PHYS_PAGES), pageSize = sysconf(_SC_PAGE_SIZE);
  size_t bytes = pages > 0 && pageSize > 0 ? size_t(pages) * size_t(pageSize) : SIZE_MAX;
  // cgroup v2, then v1 ("max" or a huge number when unlimited).
  for (const char* file : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    if (FILE* f = std::fopen(file, "r")) {
      unsigned long long limit = 0;
      if (std::fscanf(f, "%llu", &limit) == 1 && limit > 0 && limit < bytes) bytes = size_t(limit);
      std::fclose(f);
    }
  }
  return bytes;
}

}  // namespace

std::shared_ptr<Storage> CpuBackend::allocate(size_t bytes) {
  size_t rounded = HostPool::roundUp(std::max<size_t>(bytes, 1));
  void* p = hostPool().take(rounded);
  return std::make_shared<Storage>(kCpu, p, bytes,
                                   [rounded](void* q, size_t) { hostPool().give(q, rounded); });
}

size_t CpuBackend::memoryBytes() const {
  static const size_t bytes = hostMemoryBytes();
  return bytes;
}

void CpuBackend::upload(const Tensor& dst, const void* host) {
  std::memcpy(dst.storage->data(), host, dst.bytes());
}

void CpuBackend::zero(const Tensor& dst) { std::memset(dst.storage->data(), 0, dst.bytes()); }

}  // namespace sg::cpu_backend
