// The CUDA backend: streams, events, memory and every op of the Backend interface, calling
// the launchers of gemm.cu, elementwise.cu, batchnorm.cu, loss.cu, lstm.cu and optimizer.cu.
//
// Design rules (read these before changing anything in the backend): each is written beside
// the code it governs. Threads and Completions: runtime_callbacks.cuh. Streams and Events:
// runtime_streams.cuh. Memory: runtime_memory.cuh. Graphs: cuda_graphs.cu. Transfers:
// cuda_transfers.cu. The op methods: cuda_ops.cu. cuda_backend_impl.cuh declares the backend
// class and says which file defines which of its methods.
//
// This file: the backend object of a device, and the entry points of cuda_backend.h through
// which the addon registers the backend with core. All of these files are host code; the host
// emulation (test/cuda/host_emulation/run.sh) compiles them with g++ on a fake CUDA runtime.
#include "cuda_backend.h"

#include "cuda_backend_impl.cuh"

namespace sg::cuda::runtime {

CudaBackend::CudaBackend(int index) : index_(index), allocator_(index, registry_) {
  CUDA_CHECK(cudaSetDevice(index));
  buildErrorTexts();
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  name_ = prop.name;
  CUDA_CHECK(cudaDeviceGetAttribute(&numSMs_, cudaDevAttrMultiProcessorCount, index));
  int major = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, index));
  tf32Capable_ = major >= 8;
  size_t freeBytes = 0;
  if (cudaMemGetInfo(&freeBytes, &memoryBytes_) != cudaSuccess) {
    (void)cudaGetLastError();
    memoryBytes_ = prop.totalGlobalMem;
  }
  default_ = new CudaStream(index, registry_);  // lives as long as the process
}

std::shared_ptr<Storage> CudaBackend::allocate(size_t bytes) {
  enter();
  size_t rounded = 0;
  void* p = allocator_.allocate(bytes, &rounded);
  DeviceAllocator* a = &allocator_;
  try {
    return std::make_shared<Storage>(device(), p, bytes,
                                     [a, rounded](void* q, size_t) { a->release(q, rounded); });
  } catch (...) {
    a->release(p, rounded);
    throw;
  }
}

std::shared_ptr<Stream> CudaBackend::createStream() {
  enter();
  return std::make_shared<CudaStream>(index_, registry_);
}

std::shared_ptr<Event> CudaBackend::createEvent() {
  enter();
  return std::make_shared<CudaEvent>(index_);
}

}  // namespace sg::cuda::runtime

namespace sg::cuda {
using runtime::CudaBackend;

// ============================================================================================
// entry points
// ============================================================================================

namespace {

// cudaGetDeviceCount, called once: the count and, when it failed, the error's name and text.
// A driver older than the runtime (this CUDA 13 build links the runtime statically and needs
// an R580+ driver) fails here with cudaErrorInsufficientDriver: reported, not swallowed.
struct DeviceCount {
  int count = 0;
  std::string error;
};

const DeviceCount& probeDevices() {
  static const DeviceCount probe = [] {
    DeviceCount d;
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      d.error = cudaErrorText(e);
      (void)cudaGetLastError();  // no driver / no device: not an error for the CPU backend
      return d;
    }
    d.count = n > 0 ? n : 0;
    return d;
  }();
  return probe;
}

}  // namespace

int deviceCount() { return probeDevices().count; }

std::string deviceCountError() { return probeDevices().error; }

Backend& backend(int index) {
  const int n = deviceCount();
  if (index < 0 || index >= n)
    throw std::runtime_error("cuda:" + std::to_string(index) + " is not available (" +
                             std::to_string(n) + " CUDA device(s) present)");
  static std::mutex* m = new std::mutex();
  static std::vector<CudaBackend*>* backends = new std::vector<CudaBackend*>(n, nullptr);
  std::lock_guard<std::mutex> lock(*m);
  CudaBackend*& b = (*backends)[index];
  if (!b) b = new CudaBackend(index);  // never destroyed: Storages may be released at exit
  return *b;
}

void* streamHandle(Stream& s) { return runtime::rawStream(s); }

void registerCudaBackend() {
  static const BackendProvider provider{deviceCount, deviceCountError, backend, setGemmTf32,
                                        gemmTf32};
  registerBackend(DeviceKind::Cuda, &provider);
}

}  // namespace sg::cuda
