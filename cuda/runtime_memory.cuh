// The CUDA backend: pinned host memory and the device allocator.
//
// Memory. A caching allocator per device over cudaMalloc, with this rule:
//   Storage release makes no CUDA call: it puts the block on a "retired" list. Every block's
//   uses were enqueued (on whatever streams) before its Storage was released, because the
//   enqueueing call held a Tensor, hence the Storage. At the next allocate, the retired
//   blocks get a fence: one event recorded on every live stream of the device. A fenced
//   block goes back to the free cache once all of the fence's events have completed, i.e.
//   once every stream has passed the point where the block was released; only then can it
//   be handed out again. A stream leaves the live set only after its destructor has
//   synchronised it, so a fence never misses work. Scratch buffers of ops (loss partials,
//   label flags) are Storages too, released right after their kernels are enqueued.
//   Sizes are rounded (at most 1/16 waste) and cached blocks are reused for the same
//   rounded size. On cudaMalloc failure: wait for all fences, cudaFree every cached block,
//   retry once, then throw "CUDA out of memory allocating N bytes on cuda:I". While a capture
//   is open the cache is kept (cudaFree synchronises, which would invalidate the capture):
//   the allocation throws at once.
// Part of the CUDA backend (cuda_backend.cu has the overview). Host code: the host emulation
// (test/cuda/host_emulation/run.sh) compiles it with g++ on a fake CUDA runtime.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../native/core/backend.h"
#include "check.cuh"
#include "runtime_callbacks.cuh"

namespace sg::cuda::runtime {

// Sizes rounded so that nearby requests share blocks (at most 1/16 wasted).
inline size_t roundUpBytes(size_t bytes) {
  if (bytes <= 4096) return std::max<size_t>(512, (bytes + 511) / 512 * 512);
  size_t step = 4096;
  while (step * 16 < bytes) step *= 2;
  return (bytes + step - 1) / step * step;
}

// Process-wide cache of pinned buffers for downloads and label flags. take() runs on normal
// threads; give() may run in a callback (it makes no CUDA call there).
class PinnedPool {
 public:
  void* take(size_t bytes, size_t* rounded) {
    const size_t r = roundUpBytes(bytes);
    *rounded = r;
    {
      std::lock_guard<std::mutex> lock(m_);
      auto it = free_.find(r);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= r;
        return p;
      }
    }
    void* p = nullptr;
    const cudaError_t e = cudaHostAlloc(&p, r, cudaHostAllocPortable);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      throw std::runtime_error("CUDA out of memory allocating " + std::to_string(r) +
                               " bytes of pinned host memory");
    }
    CUDA_CHECK(e);
    return p;
  }

  void give(void* p, size_t rounded) {
    {
      std::lock_guard<std::mutex> lock(m_);
      if (cached_ + rounded <= kMaxCached) {
        free_[rounded].push_back(p);
        cached_ += rounded;
        return;
      }
    }
    runOrDefer([p] {
      (void)cudaFreeHost(p);
      (void)cudaGetLastError();
    });
  }

 private:
  static constexpr size_t kMaxCached = size_t(256) << 20;
  std::mutex m_;
  std::map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

inline PinnedPool& pinnedPool() {
  static PinnedPool* pool = new PinnedPool();  // never destroyed: callbacks may come late
  return *pool;
}

// The streams of a device that can run work touching Storage memory.
struct StreamRegistry {
  std::mutex m;  // held while fences are recorded, and while a stream leaves
  std::vector<cudaStream_t> streams;
  cudaStream_t captureOrigin = nullptr;  // the stream a capture was begun on, if any
  // Destructions of streams that were part of the open capture when released: a capturing
  // stream can be neither synchronised nor destroyed, so they run after endCapture.
  std::vector<std::function<void()>> afterCapture;
};

class DeviceAllocator {
 public:
  DeviceAllocator(int device, StreamRegistry& registry) : device_(device), registry_(registry) {}

  // A block of at least `bytes` (its rounded size in *rounded). The device must be current.
  void* allocate(size_t bytes, size_t* rounded) {
    const size_t r = roundUpBytes(std::max<size_t>(bytes, 1));
    *rounded = r;
    std::lock_guard<std::mutex> lock(m_);
    fenceRetired();
    collectFences(false);
    if (void* p = takeFree(r)) return handOut(p);
    if (void* p = tryMalloc(r)) return handOut(p);
    // Out of memory: wait until every released block is reusable, give the cache back to
    // the driver and try once more. Not while a capture is open: cudaFree synchronises the
    // device, which a capture does not allow (it would be invalidated); the cache is kept
    // and the allocation fails instead.
    const bool capturing = capturingNow();
    if (!capturing) {
      fenceRetired();
      collectFences(true);
      if (void* p = takeFree(r)) return handOut(p);
      freeCached();
      if (void* p = tryMalloc(r)) return handOut(p);
    }
    size_t freeBytes = 0, totalBytes = 0;
    std::string detail;
    if (cudaMemGetInfo(&freeBytes, &totalBytes) == cudaSuccess)
      detail = std::to_string(freeBytes) + " of " + std::to_string(totalBytes) + " bytes free";
    if (capturing)
      detail += std::string(detail.empty() ? "" : "; ") +
                "during a graph capture, where cached blocks cannot be given back";
    throwOutOfMemory(bytes, device_, detail);
  }

  // Storage release: any thread, callbacks included. No CUDA call. A block handed out while a
  // capture is open and released before it ends was used by captured work only (the op's
  // scratch): the graph's nodes keep using it, so the graph owns it. Any other block (the
  // graph holds every tensor a captured op used, so it was not) retires as usual, fenced
  // once the capture has ended.
  void release(void* p, size_t rounded) {
    std::lock_guard<std::mutex> lock(retiredM_);
    if (capturing_ && captureBorn_.erase(p) > 0)
      captured_.push_back({p, rounded});
    else
      retired_.push_back({p, rounded});
  }

  struct Block {
    void* ptr;
    size_t bytes;
  };

  // While capturing, released blocks are kept for the graph (its nodes may use them).
  void beginCapture() {
    std::lock_guard<std::mutex> lock(retiredM_);
    capturing_ = true;
    captureBorn_.clear();
  }
  std::vector<Block> endCapture() {
    std::lock_guard<std::mutex> lock(retiredM_);
    capturing_ = false;
    captureBorn_.clear();
    std::vector<Block> kept;
    kept.swap(captured_);
    return kept;
  }
  // A destroyed graph's blocks: retired, i.e. reused after the next fence has passed.
  void releaseAll(const std::vector<Block>& blocks) {
    std::lock_guard<std::mutex> lock(retiredM_);
    retired_.insert(retired_.end(), blocks.begin(), blocks.end());
  }

 private:
  struct Fence {
    std::vector<cudaEvent_t> events;
    std::vector<Block> blocks;
  };

  // m_ held. Gives the blocks retired so far a fence on every live stream (not during a
  // capture: a fence recorded there would become a graph node).
  void fenceRetired() {
    std::vector<Block> blocks;
    {
      std::lock_guard<std::mutex> lock(retiredM_);
      if (capturing_) return;
      blocks.swap(retired_);
    }
    if (blocks.empty()) return;
    Fence fence;
    try {
      std::lock_guard<std::mutex> lock(registry_.m);
      fence.events.reserve(registry_.streams.size());
      for (cudaStream_t s : registry_.streams) {
        fence.events.push_back(takeEvent());
        CUDA_CHECK(cudaEventRecord(fence.events.back(), s));
      }
    } catch (...) {
      // Not fenced: back to the retired list (fenced again next time); events are reusable.
      for (cudaEvent_t e : fence.events) spareEvents_.push_back(e);
      std::lock_guard<std::mutex> lock(retiredM_);
      retired_.insert(retired_.end(), blocks.begin(), blocks.end());
      throw;
    }
    fence.blocks = std::move(blocks);
    fences_.push_back(std::move(fence));
  }

  // m_ held. Moves the blocks of completed fences (oldest first) to the free cache; with
  // `wait`, waits for all of them.
  void collectFences(bool wait) {
    while (!fences_.empty()) {
      Fence& fence = fences_.front();
      for (cudaEvent_t e : fence.events) {
        if (wait) {
          CUDA_CHECK(cudaEventSynchronize(e));
          continue;
        }
        const cudaError_t status = cudaEventQuery(e);
        if (status == cudaErrorNotReady) {
          (void)cudaGetLastError();  // not an error; make sure no launch check sees it
          return;
        }
        CUDA_CHECK(status);
      }
      for (const Block& b : fence.blocks) free_[b.bytes].push_back(b.ptr);
      for (cudaEvent_t e : fence.events) spareEvents_.push_back(e);
      fences_.pop_front();
    }
  }

  cudaEvent_t takeEvent() {
    if (!spareEvents_.empty()) {
      cudaEvent_t e = spareEvents_.back();
      spareEvents_.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    return e;
  }

  void* takeFree(size_t r) {
    auto it = free_.find(r);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    return p;
  }

  bool capturingNow() {
    std::lock_guard<std::mutex> lock(retiredM_);
    return capturing_;
  }

  // Notes a block handed out during a capture (see release).
  void* handOut(void* p) {
    std::lock_guard<std::mutex> lock(retiredM_);
    if (capturing_) captureBorn_.insert(p);
    return p;
  }

  // nullptr when the device is out of memory; throws on other errors.
  void* tryMalloc(size_t r) {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, r);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return nullptr;
    }
    CUDA_CHECK(e);
    return p;
  }

  void freeCached() {
    for (auto& [bytes, list] : free_) {
      while (!list.empty()) {
        CUDA_CHECK(cudaFree(list.back()));
        list.pop_back();
      }
    }
    free_.clear();
  }

  const int device_;
  StreamRegistry& registry_;

  std::mutex m_;  // the members below; held across CUDA calls, never taken by callbacks
  std::map<size_t, std::vector<void*>> free_;
  std::deque<Fence> fences_;
  std::vector<cudaEvent_t> spareEvents_;

  std::mutex retiredM_;  // never held across a CUDA call
  std::vector<Block> retired_;
  bool capturing_ = false;
  std::set<void*> captureBorn_;  // handed out during the open capture, not yet released
  std::vector<Block> captured_;
};

}  // namespace sg::cuda::runtime
