// The CUDA backend: the backend object of one device, shared by its files:
//   cuda_backend.cu    the object, its device queries and the entry points (deviceCount, backend,
//                      registration with core); the overview of the design rules
//   cuda_transfers.cu  upload, zero, download
//   cuda_graphs.cu     capture and replay
//   cuda_ops.cu        the op methods: each launches its kernels (kernels.cuh, gemm.cuh)
// and the runtime headers runtime_callbacks.cuh, runtime_memory.cuh, runtime_streams.cuh.
// Part of the CUDA backend (cuda_backend.cu has the overview). Host code: the host emulation
// (test/cuda/host_emulation/run.sh) compiles it with g++ on a fake CUDA runtime.
#pragma once
#include "gemm.cuh"
#include "kernels.cuh"
#include "runtime_streams.cuh"

namespace sg::cuda::runtime {

constexpr size_t kUploadChunk = size_t(4) << 20;
// uploadAsync's staging buffers in flight at most: past that the host waits for the oldest copy
// (it is then that many batches ahead of the device).
constexpr size_t kMaxStagingSlots = 4;

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int index);

  Device device() const override { return Device{DeviceKind::Cuda, index_}; }
  std::string deviceName() const override { return name_; }

  Stream& defaultStream() override { return *default_; }

  size_t memoryBytes() const override { return memoryBytes_; }

  std::shared_ptr<Storage> allocate(size_t bytes) override;
  std::shared_ptr<Stream> createStream() override;
  std::shared_ptr<Event> createEvent() override;

  // cuda_graphs.cu
  void beginCapture(Stream& origin) override;
  void keepAlive(Stream&, const std::shared_ptr<Storage>& storage) override;
  std::unique_ptr<Graph> endCapture(Stream& origin) override;

  // cuda_transfers.cu
  void upload(const Tensor& dst, const void* host) override;
  // On the upload stream, like upload, so that it is ordered before any later work.
  void zero(const Tensor& dst) override;
  void download(Stream& s, const Tensor& src, void* host, std::shared_ptr<void> hostOwner) override;
  void uploadAsync(Stream& s, const Tensor& dst, const void* host) override;

  // cuda_ops.cu: the ops of the op table (core/op_table.json)
#include "../native/core/gen/backend_overrides.inc"

 private:
  // Every op: this device current on the calling thread.
  void use() {
    CudaEvent::checkNotInCallback();
    CUDA_CHECK(cudaSetDevice(index_));
  }
  // Entry points that allocate or free resources also run deferred cleanup first.
  void enter() {
    CudaEvent::checkNotInCallback();
    deferred().drain();
    CUDA_CHECK(cudaSetDevice(index_));
  }

  // cuda_ops.cu
  // Scratch for a split-K GEMM (gemm.cu), or null when the product is not split. Released by
  // the caller right after the launch, like every op's scratch (fenced before reuse).
  std::shared_ptr<Storage> gemmWorkspace(int64_t M, int64_t N, int64_t K);
  // After an op that wrote `flag` on stream s: copy the flag to pinned memory and queue a
  // callback that records `message` as the stream's error if it is set.
  void reportLabelErrors(Stream& s, const int* flag, std::string message);

  const int index_;
  std::string name_;
  int numSMs_ = 1;
  bool tf32Capable_ = false;
  size_t memoryBytes_ = 0;  // the device's total memory (cudaMemGetInfo)
  StreamRegistry registry_;       // before allocator_ and default_, which use it
  DeviceAllocator allocator_;
  CudaStream* default_ = nullptr;

  std::vector<std::shared_ptr<Storage>> captureKept_;  // the open capture's tensors

  std::mutex uploadM_;  // the upload staging state below
  cudaStream_t uploadStream_ = nullptr;
  void* staging_[2] = {nullptr, nullptr};
  cudaEvent_t stagingDone_[2] = {nullptr, nullptr};
  bool stagingBusy_[2] = {false, false};

  // uploadAsync's staging: pinned buffers (from pinnedPool), each with the event recorded after
  // the copy that last read it. A buffer is refilled only once its event has completed.
  struct StagingSlot {
    void* buffer = nullptr;
    size_t bytes = 0;  // the buffer's (rounded) size
    cudaEvent_t copied = nullptr;
    bool pending = false;  // a copy from it was enqueued and `copied` has not been seen done
    uint64_t use = 0;      // when it was last filled (the oldest is waited for first)
  };
  // asyncUploadM_ held: a slot with no copy in flight and at least `bytes` of buffer.
  StagingSlot& freeStagingSlot(size_t bytes);
  std::mutex asyncUploadM_;
  std::vector<StagingSlot> asyncSlots_;
  uint64_t asyncUses_ = 0;
};

}  // namespace sg::cuda::runtime
