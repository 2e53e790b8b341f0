// A stand-in for <cuda_runtime.h> that lets the KERNEL sections of cuda/*.cu compile with g++
// and run on the CPU, one thread per CUDA thread (blocks one after another), so that their
// index arithmetic, guards, barriers and reductions can be checked against the CPU kernels
// on a machine without a GPU. Not a CUDA implementation: only what those kernels use.
// __shared__ becomes a function-static (shared by the threads of the running block),
// __syncthreads a barrier, warp shuffles an exchange through a per-warp barrier.
#pragma once
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }

namespace emu {

class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    const int gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return gen != gen_; });
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_, count_ = 0, gen_ = 0;
};

struct BlockState {
  explicit BlockState(int threads) : barrier(threads), lanes(threads) {
    for (int w = 0; w < (threads + 31) / 32; ++w) warps.emplace_back(new Barrier(32));
  }
  Barrier barrier;
  std::vector<std::unique_ptr<Barrier>> warps;
  std::vector<double> lanes;
  std::atomic<int> orAcc{0};
};

inline thread_local uint3 tIdx, bIdx;
inline dim3 gDim, bDim;
inline BlockState* current = nullptr;

inline int linearTid() { return tIdx.x + tIdx.y * bDim.x + tIdx.z * bDim.x * bDim.y; }

// Runs f() as the kernel body for every thread of every block.
template <class F>
void launch(dim3 grid, dim3 block, F f) {
  gDim = grid;
  bDim = block;
  const int threads = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        BlockState state(threads);
        current = &state;
        std::vector<std::thread> ts;
        ts.reserve(threads);
        for (int t = 0; t < threads; ++t)
          ts.emplace_back([&, t] {
            tIdx.x = t % block.x;
            tIdx.y = (t / block.x) % block.y;
            tIdx.z = t / (block.x * block.y);
            bIdx.x = bx;
            bIdx.y = by;
            bIdx.z = bz;
            f();
          });
        for (auto& th : ts) th.join();
        current = nullptr;
      }
}

// Value of lane `src` of this warp (own value when src is outside [0, 32)).
template <class T>
T exchange(T v, int src) {
  BlockState& b = *current;
  const int tid = linearTid(), warp = tid / 32;
  b.lanes[tid] = static_cast<double>(v);
  b.warps[warp]->wait();
  const T r = (src < 0 || src >= 32) ? v : static_cast<T>(b.lanes[warp * 32 + src]);
  b.warps[warp]->wait();
  return r;
}

}  // namespace emu

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define CUDART_CB
#define threadIdx (::emu::tIdx)
#define blockIdx (::emu::bIdx)
#define blockDim (::emu::bDim)
#define gridDim (::emu::gDim)

inline void __syncthreads() { emu::current->barrier.wait(); }
inline int __syncthreads_or(int p) {
  emu::BlockState& b = *emu::current;
  b.barrier.wait();
  if (p) b.orAcc.fetch_or(1);
  b.barrier.wait();
  const int r = b.orAcc.load();
  b.barrier.wait();
  return r;
}
template <class T>
T __shfl_xor_sync(unsigned, T v, int mask) {
  return emu::exchange(v, (emu::linearTid() % 32) ^ mask);
}
template <class T>
T __shfl_down_sync(unsigned, T v, unsigned delta) {
  return emu::exchange(v, emu::linearTid() % 32 + static_cast<int>(delta));
}
template <class T>
T __shfl_sync(unsigned, T v, int src) {
  return emu::exchange(v, src);
}
template <class T>
T __ldg(const T* p) {
  return *p;
}
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
