// A stand-in for <cuda_runtime.h> that lets the kernel files cuda/*.cu (all but
// cuda_backend.cu) compile with g++ and run on the CPU, one thread per CUDA thread (blocks one
// after another), so that their index arithmetic, guards, barriers and reductions, and their
// launchers' grid sizes, tile choices and argument packing, can be checked against the CPU
// kernels on a machine without a GPU. Not a CUDA implementation: only what those files use.
// __shared__ becomes a function-static (shared by the threads of the running block),
// __syncthreads a barrier, warp shuffles an exchange through a per-warp barrier.
// SG_LAUNCH (the launch macro of cuda/check.cuh) runs the kernel at once, synchronously (the
// stream is ignored), after checking the launch configuration against the CUDA limits
// (grid, block, shared memory, parameter bytes); a bad one is reported by cudaGetLastError
// as on a GPU. Every launch is logged in emu::launches (kernel, grid, block).
#pragma once
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

// ---- the runtime API the kernel files use ---------------------------------------------------
// The codes are those of the CUDA runtime.
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInsufficientDriver = 35,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalState = 401,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
};
struct CUstream_st;
using cudaStream_t = CUstream_st*;

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
inline thread_local cudaError_t lastError = cudaSuccess;  // per host thread, as CUDA's
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

// Where a launch runs: at once (the kernel tests), or, once the fake runtime of
// fake_runtime.cpp has set this hook, queued on its stream like any other stream work.
inline std::function<void(cudaStream_t, std::function<void()>)> submitHook;
inline void submit(cudaStream_t stream, std::function<void()> work) {
  if (submitHook)
    submitHook(stream, std::move(work));
  else
    work();
}
inline std::mutex& launchMutex() {
  static std::mutex m;
  return m;
}

// One kernel launch as the emulation saw it.
struct LaunchRecord {
  std::string kernel;
  dim3 grid, block;
  size_t paramBytes;
};
inline std::vector<LaunchRecord> launches;

// The launch limits of compute capability 8.x/9.x (CUDA C++ Programming Guide, "Technical
// Specifications"); kernel parameters are held to the classic 4 KB.
inline bool validLaunch(dim3 g, dim3 b, size_t sharedBytes, size_t paramBytes) {
  const unsigned long long threads = 1ull * b.x * b.y * b.z;
  return g.x >= 1 && g.x <= 2147483647u && g.y >= 1 && g.y <= 65535 && g.z >= 1 &&
         g.z <= 65535 && b.x >= 1 && b.x <= 1024 && b.y >= 1 && b.y <= 1024 && b.z >= 1 &&
         b.z <= 64 && threads <= 1024 && sharedBytes <= 48 * 1024 && paramBytes <= 4096;
}

// What SG_LAUNCH(grid, block, shared, stream, kernel) returns: called with the kernel's
// arguments, it checks the configuration, logs the launch and runs it.
template <class Kernel>
struct Launcher {
  dim3 grid, block;
  size_t sharedBytes;
  const char* name;
  Kernel kernel;

  template <class... Args>
  void operator()(Args... args) const {
    const size_t paramBytes = (size_t{0} + ... + sizeof(Args));
    launches.push_back({name, grid, block, paramBytes});
    if (!validLaunch(grid, block, sharedBytes, paramBytes)) {
      lastError = cudaErrorInvalidConfiguration;
      return;
    }
    const dim3 g = grid, b = block;
    const Kernel k = kernel;
    submit(stream, [g, b, k, args...] {
      std::lock_guard<std::mutex> lock(launchMutex());  // one kernel at a time (globals above)
      launch(g, b, [&] { k(args...); });
    });
  }

  cudaStream_t stream;
};

template <class Kernel>
Launcher<Kernel> makeLauncher(dim3 grid, dim3 block, size_t sharedBytes, cudaStream_t stream,
                              const char* name, Kernel kernel) {
  return {grid, block, sharedBytes, name, kernel, stream};
}

}  // namespace emu

#define SG_LAUNCH(grid, block, sharedBytes, stream, ...)                                \
  ::emu::makeLauncher((grid), (block), (sharedBytes), (stream), #__VA_ARGS__,           \
                      [](const auto&... kernelArgs) { __VA_ARGS__(kernelArgs...); })

inline cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::lastError;
  emu::lastError = cudaSuccess;
  return e;
}
inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
  }
  return "cudaErrorUnknown";
}
inline const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaErrorInvalidConfiguration ? "invalid configuration argument"
                                            : cudaGetErrorName(e);
}

// Kernel code that needs a stand-in of its own here (gemm.cu's TF32 kernel) tests this.
#define SG_HOST_EMULATION 1
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
inline void __syncwarp(unsigned = 0xffffffffu) { emu::current->warps[emu::linearTid() / 32]->wait(); }
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

// ---- the runtime API of cuda_backend.cu: declared here, defined by fake_runtime.cpp --------
// (the kernel files use none of it; only the fake-runtime test links it)
struct CUevent_st;
struct CUgraph_st;
struct CUgraphExec_st;
using cudaEvent_t = CUevent_st*;
using cudaGraph_t = CUgraph_st*;
using cudaGraphExec_t = CUgraphExec_st*;
using cudaHostFn_t = void (*)(void*);
enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
};
enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
};
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
};
constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDisableTiming = 2;
constexpr unsigned cudaHostAllocPortable = 1;

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaMemGetInfo(size_t* freeBytes, size_t* totalBytes);
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* graph);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s);
cudaError_t cudaLaunchHostFunc(cudaStream_t s, cudaHostFn_t fn, void* data);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
