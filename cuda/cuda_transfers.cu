// The CUDA backend: transfers between host and device.
//
// Transfers. upload is synchronous: chunks go through two pinned staging buffers on a
//   private stream (double buffered), then the stream is synchronised; zero is a
//   cudaMemsetAsync on that stream, synchronised too. download copies
//   into a pinned staging buffer on the caller's stream; the copy into the caller's host
//   pointer (kept alive by its owner until then), and the buffer's return to a process-wide
//   pinned pool, are host work of the stream (runtime_streams.cuh, "Host work"), done by the
//   host function of the stream's next whenDone: a read is one host function. A whenDone that
//   cannot be enqueued synchronises the stream and does the host work before it throws, so
//   that no queued download still writes into a buffer the caller frees.
//   uploadAsync copies into a pinned staging buffer and enqueues cudaMemcpyAsync on the
//   caller's stream: the host does not wait, and the data is copied once on the host. Each
//   buffer has an event recorded after its copy; a buffer is refilled only once that event
//   has completed (cudaEventQuery), else another is used, up to kMaxStagingSlots; then the
//   host waits for the oldest (the only wait: the host is that many uploads ahead).
// Part of the CUDA backend (cuda_backend.cu has the overview). Host code: the host emulation
// (test/cuda/host_emulation/run.sh) compiles it with g++ on a fake CUDA runtime.
#include "cuda_backend_impl.cuh"

namespace sg::cuda::runtime {
namespace {

// Host work, run once the device-to-host copy into `staging` is done. After a fault CUDA runs
// no host function (the staging buffer is then leaked, and whenDone reports the fault).
struct DownloadJob {
  void* staging;
  size_t stagingBytes;
  void* host;
  size_t bytes;
  std::shared_ptr<void> hostOwner;  // keeps `host` valid until the copy into it

  void operator()() const {
    std::memcpy(host, staging, bytes);
    pinnedPool().give(staging, stagingBytes);
  }
};
}  // namespace

void CudaBackend::upload(const Tensor& dst, const void* host) {
  const size_t bytes = dst.bytes();
  if (bytes == 0) return;
  enter();
  std::lock_guard<std::mutex> lock(uploadM_);
  if (!uploadStream_) CUDA_CHECK(cudaStreamCreateWithFlags(&uploadStream_, cudaStreamNonBlocking));
  for (int b = 0; b < 2; ++b) {
    if (!stagingDone_[b])
      CUDA_CHECK(cudaEventCreateWithFlags(&stagingDone_[b], cudaEventDisableTiming));
    if (!staging_[b]) {
      const cudaError_t e = cudaHostAlloc(&staging_[b], kUploadChunk, cudaHostAllocPortable);
      if (e != cudaSuccess) staging_[b] = nullptr;
      CUDA_CHECK(e);
    }
  }
  char* d = static_cast<char*>(dst.storage->data());
  const char* h = static_cast<const char*>(host);
  try {
    // Buffer b is refilled only after the copy that last read it has completed.
    size_t chunk = 0;
    for (size_t off = 0; off < bytes; off += kUploadChunk, ++chunk) {
      const size_t len = std::min(kUploadChunk, bytes - off);
      const int b = static_cast<int>(chunk % 2);
      if (stagingBusy_[b]) {
        CUDA_CHECK(cudaEventSynchronize(stagingDone_[b]));
        stagingBusy_[b] = false;
      }
      std::memcpy(staging_[b], h + off, len);
      CUDA_CHECK(cudaMemcpyAsync(d + off, staging_[b], len, cudaMemcpyHostToDevice,
                                 uploadStream_));
      CUDA_CHECK(cudaEventRecord(stagingDone_[b], uploadStream_));
      stagingBusy_[b] = true;
    }
    CUDA_CHECK(cudaStreamSynchronize(uploadStream_));
    stagingBusy_[0] = stagingBusy_[1] = false;
  } catch (...) {
    (void)cudaStreamSynchronize(uploadStream_);  // the staging buffers are free after this
    (void)cudaGetLastError();
    stagingBusy_[0] = stagingBusy_[1] = false;
    throw;
  }
}

// On the upload stream, like upload, so that it is ordered before any later work.
void CudaBackend::zero(const Tensor& dst) {
  const size_t bytes = dst.bytes();
  if (bytes == 0) return;
  enter();
  std::lock_guard<std::mutex> lock(uploadM_);
  if (!uploadStream_) CUDA_CHECK(cudaStreamCreateWithFlags(&uploadStream_, cudaStreamNonBlocking));
  CUDA_CHECK(cudaMemsetAsync(dst.storage->data(), 0, bytes, uploadStream_));
  CUDA_CHECK(cudaStreamSynchronize(uploadStream_));
}

CudaBackend::StagingSlot& CudaBackend::freeStagingSlot(size_t bytes) {
  StagingSlot* chosen = nullptr;
  for (StagingSlot& slot : asyncSlots_) {
    if (slot.pending) {
      const cudaError_t e = cudaEventQuery(slot.copied);
      if (e == cudaErrorNotReady) continue;
      CUDA_CHECK(e);  // a fault: the slot stays pending (its copy may not have run)
      slot.pending = false;
    }
    if (!chosen || (chosen->bytes < bytes && slot.bytes > chosen->bytes)) chosen = &slot;
  }
  if (!chosen && asyncSlots_.size() < kMaxStagingSlots) {
    StagingSlot slot;
    CUDA_CHECK(cudaEventCreateWithFlags(&slot.copied, cudaEventDisableTiming));
    asyncSlots_.push_back(slot);
    chosen = &asyncSlots_.back();
  }
  if (!chosen) {  // every slot in flight: wait for the oldest copy
    const auto older = [](const StagingSlot& a, const StagingSlot& b) { return a.use < b.use; };
    chosen = &*std::min_element(asyncSlots_.begin(), asyncSlots_.end(), older);
    CUDA_CHECK(cudaEventSynchronize(chosen->copied));
    chosen->pending = false;
  }
  if (chosen->bytes < bytes) {  // a larger buffer; the small one goes back to the pool
    size_t rounded = 0;
    void* buffer = pinnedPool().take(bytes, &rounded);
    if (chosen->buffer) pinnedPool().give(chosen->buffer, chosen->bytes);
    chosen->buffer = buffer;
    chosen->bytes = rounded;
  }
  return *chosen;
}

void CudaBackend::uploadAsync(Stream& s, const Tensor& dst, const void* host) {
  const size_t bytes = dst.bytes();
  if (bytes == 0) return;
  enter();
  if (s.capturing())
    throw std::runtime_error("write: the stream is being captured into a graph; write before "
                             "beginCapture() or after endCapture()");
  cudaStream_t raw = cudaStreamOf(s).raw();
  std::lock_guard<std::mutex> lock(asyncUploadM_);
  StagingSlot& slot = freeStagingSlot(bytes);
  std::memcpy(slot.buffer, host, bytes);
  CUDA_CHECK(cudaMemcpyAsync(dst.storage->data(), slot.buffer, bytes, cudaMemcpyHostToDevice, raw));
  const cudaError_t e = cudaEventRecord(slot.copied, raw);
  if (e != cudaSuccess) {
    // Without the record the event would look complete while the copy may still read the
    // buffer: wait for the stream (the copy) before reporting the error.
    (void)cudaStreamSynchronize(raw);
    CUDA_CHECK(e);
  }
  slot.pending = true;
  slot.use = ++asyncUses_;
}

void CudaBackend::download(Stream& s, const Tensor& src, void* host, std::shared_ptr<void> hostOwner) {
  const size_t bytes = src.bytes();
  if (bytes == 0) return;
  enter();
  if (s.capturing())
    throw std::runtime_error("read: the stream is being captured into a graph; read after "
                             "endCapture() and launch()");
  CudaStream& cs = cudaStreamOf(s);
  size_t rounded = 0;
  void* staging = pinnedPool().take(bytes, &rounded);
  const cudaError_t e = cudaMemcpyAsync(staging, src.storage->data(), bytes,
                                        cudaMemcpyDeviceToHost, cs.raw());
  if (e != cudaSuccess) {
    pinnedPool().give(staging, rounded);  // nothing was queued
    CUDA_CHECK(e);
  }
  cs.addHostWork(DownloadJob{staging, rounded, host, bytes, std::move(hostOwner)});
}

}  // namespace sg::cuda::runtime
