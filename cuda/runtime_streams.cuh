// The CUDA backend: streams and events.
//
// Streams. Non-blocking streams (never synchronised with the legacy stream); the default
//   stream is one such stream per device, created with the backend. whenDone enqueues a
//   callback that passes the stream's first error since the previous callback: errors found
//   on the device (labels out of range) reach it through a device flag copied to pinned
//   memory. Errors at enqueue time (a failed launch, out of memory) throw at once.
//   A stream's destructor synchronises it before destroying it (see Memory).
//
// Host work. What the host must do once the stream has passed a point (copy a download out of
//   its pinned staging buffer into the caller's memory, look at a label flag) is not a host
//   function of its own: it is queued on the stream's state and run, in order, by the host
//   function of the stream's next whenDone, before that settles. So a read of a loss after a
//   training step costs one host function (one trip through CUDA's callback thread), not one
//   per label check, one for the copy and one for the completion. A download's bytes are
//   therefore in the caller's memory when the stream's next whenDone settles (Tensor.read
//   asks for that whenDone at once). Bounded: every kMaxHostWork items without a whenDone
//   the pending ones go in a host function of their own; a stream destroyed with some pending
//   runs them after its final synchronisation. After a device fault CUDA runs no host
//   function: pending staging buffers are leaked (as before) and whenDone settles with the
//   fault (the completion thread).
//
// Events. cudaEventDisableTiming; record = cudaEventRecord. whenDone uses a helper stream
//   owned by the event: cudaStreamWaitEvent (which binds the latest record at call time, or
//   is a no-op if there was none) then a callback on that helper stream.
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
#include "runtime_memory.cuh"

namespace sg::cuda::runtime {

// The first error of queued work since the last whenDone callback, and the host work (see
// "Host work") queued since then.
struct StreamState {
  std::mutex m;
  std::string error;
  HostWork hostWork;

  void setError(const std::string& e) {
    std::lock_guard<std::mutex> lock(m);
    if (error.empty()) error = e;
  }
  std::string take() {
    std::lock_guard<std::mutex> lock(m);
    std::string e;
    e.swap(error);
    return e;
  }
  // Returns how many items are pending with this one.
  size_t addHostWork(std::function<void()> work) {
    std::lock_guard<std::mutex> lock(m);
    hostWork.push_back(std::move(work));
    return hostWork.size();
  }
  HostWork takeHostWork() {
    std::lock_guard<std::mutex> lock(m);
    HostWork w;
    w.swap(hostWork);
    return w;
  }
};

// Pending host work that goes in a host function of its own (no whenDone came for a while).
struct HostWorkJob {
  HostWork work;
};

inline void CUDART_CB hostWorkFunc(void* data) {
  CallbackScope scope;
  std::unique_ptr<HostWorkJob> job(static_cast<HostWorkJob*>(data));
  runHostWork(job->work);
}

class CudaEvent final : public Event {
 public:
  explicit CudaEvent(int index) : index_(index) {
    CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
  }

  ~CudaEvent() override {
    const int index = index_;
    cudaEvent_t event = event_;
    cudaStream_t helper = helper_;
    // Both calls return at once and free the resources when pending work is done.
    runOrDefer([index, event, helper] {
      (void)cudaSetDevice(index);
      if (helper) (void)cudaStreamDestroy(helper);
      (void)cudaEventDestroy(event);
      (void)cudaGetLastError();
    });
  }

  Device device() const override { return Device{DeviceKind::Cuda, index_}; }

  void record(Stream& stream) override;

  void whenDone(std::function<void()> done) override {
    checkNotInCallback();
    if (capturedRecord) throw std::runtime_error(capturedRecordMessage("synchronize"));
    CUDA_CHECK(cudaSetDevice(index_));
    std::lock_guard<std::mutex> lock(m_);
    if (!helper_) CUDA_CHECK(cudaStreamCreateWithFlags(&helper_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamWaitEvent(helper_, event_, 0));  // binds the latest record
    auto job = std::make_shared<CompletionJob>();
    job->device = index_;
    job->settle = [done = std::move(done)](const std::string&) { done(); };
    enqueueCompletion(helper_, std::move(job));
  }

  cudaEvent_t raw() const { return event_; }

  // Whether the latest record was captured into a graph (it can then only be waited for by
  // the same capture). Set and read on the JavaScript thread only.
  bool capturedRecord = false;

  static std::string capturedRecordMessage(const char* what) {
    return std::string(what) + ": the event's latest record was captured into a graph; record "
                               "it outside the capture first";
  }

  static void checkNotInCallback() {
    if (tInCallback)
      throw std::logic_error(
          "synthgrad CUDA backend: called from inside a stream callback (not allowed)");
  }

 private:
  const int index_;
  cudaEvent_t event_ = nullptr;
  std::mutex m_;  // helper_ creation and use
  cudaStream_t helper_ = nullptr;
};

class CudaStream final : public Stream {
 public:
  CudaStream(int index, StreamRegistry& registry) : index_(index), registry_(registry) {
    CUDA_CHECK(cudaSetDevice(index));
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    try {
      std::lock_guard<std::mutex> lock(registry_.m);
      registry_.streams.push_back(stream_);
    } catch (...) {
      (void)cudaStreamDestroy(stream_);
      throw;
    }
  }

  ~CudaStream() override {
    const int index = index_;
    cudaStream_t stream = stream_;
    StreamRegistry* registry = &registry_;
    // Synchronise first: the allocator's fences stop covering this stream once it leaves
    // the registry, so no work of it may still be pending then.
    auto destroy = [index, stream, registry, state = state_] {
      (void)cudaSetDevice(index);
      (void)cudaStreamSynchronize(stream);
      HostWork pending = state->takeHostWork();  // its transfers are done: finish them
      runHostWork(pending);
      {
        std::lock_guard<std::mutex> lock(registry->m);
        auto& v = registry->streams;
        v.erase(std::remove(v.begin(), v.end(), stream), v.end());
      }
      (void)cudaStreamDestroy(stream);
      (void)cudaGetLastError();
    };
    runOrDefer([index, stream, registry, destroy] {
      (void)cudaSetDevice(index);
      cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
      const bool inCapture = cudaStreamIsCapturing(stream, &status) == cudaSuccess &&
                             status != cudaStreamCaptureStatusNone;
      (void)cudaGetLastError();
      if (inCapture) {  // joined to (or the origin of) the open capture: after endCapture
        std::lock_guard<std::mutex> lock(registry->m);
        registry->afterCapture.push_back(destroy);
        return;
      }
      destroy();
    });
  }

  Device device() const override { return Device{DeviceKind::Cuda, index_}; }

  bool capturing() const override {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(stream_, &status));
    return status == cudaStreamCaptureStatusActive;
  }

  // Same rules as the CPU backend's, checked here so that both give the same messages.
  void wait(Event& e) override {
    CudaEvent::checkNotInCallback();
    CUDA_CHECK(cudaSetDevice(index_));
    auto& event = static_cast<CudaEvent&>(e);
    if (capturing() && !event.capturedRecord)
      throw std::runtime_error("wait: a capturing stream can only wait for events recorded "
                               "during the same capture");
    if (event.capturedRecord && !captureOpen())
      throw std::runtime_error(CudaEvent::capturedRecordMessage("wait"));
    CUDA_CHECK(cudaStreamWaitEvent(stream_, event.raw(), 0));
  }

  void whenDone(std::function<void(const std::string&)> done) override {
    CudaEvent::checkNotInCallback();
    CUDA_CHECK(cudaSetDevice(index_));
    if (capturing())
      throw std::runtime_error("synchronize: the stream is being captured into a graph; wait "
                               "after endCapture() and launch()");
    auto job = std::make_shared<CompletionJob>();
    job->device = index_;
    job->settle = std::move(done);
    job->streamError = [state = state_] { return state->take(); };
    job->hostWork = state_->takeHostWork();  // run by its host function, before it settles
    try {
      enqueueCompletion(stream_, job);
    } catch (...) {
      // A read() queued a download into the caller's buffer just before this whenDone; the
      // caller frees that buffer when this throws. Let the queued work finish first (on a
      // failed device nothing more runs, and this returns at once), then the host work.
      (void)cudaStreamSynchronize(stream_);
      (void)cudaGetLastError();
      runHostWork(job->hostWork);
      throw;
    }
  }

  // Queues host work for when the stream gets past the work enqueued so far (see "Host
  // work"). If its host function cannot be enqueued the stream is synchronised and the work
  // runs here before the error is thrown.
  void addHostWork(std::function<void()> work) {
    if (state_->addHostWork(std::move(work)) < kMaxHostWork) return;
    auto job = std::make_unique<HostWorkJob>();
    job->work = state_->takeHostWork();
    const cudaError_t e = cudaLaunchHostFunc(stream_, hostWorkFunc, job.get());
    if (e == cudaSuccess) {
      job.release();  // the host function owns it now
      return;
    }
    (void)cudaStreamSynchronize(stream_);
    (void)cudaGetLastError();
    runHostWork(job->work);
    CUDA_CHECK(e);
  }

  // Pending host work items that go in a host function of their own (see "Host work").
  static constexpr size_t kMaxHostWork = 64;

  cudaStream_t raw() const { return stream_; }
  const std::shared_ptr<StreamState>& state() const { return state_; }

 private:
  // Whether the device has a capture open (any stream), kept by the registry.
  bool captureOpen() const {
    std::lock_guard<std::mutex> lock(registry_.m);
    return registry_.captureOrigin != nullptr;
  }

  const int index_;
  StreamRegistry& registry_;
  cudaStream_t stream_ = nullptr;
  std::shared_ptr<StreamState> state_ = std::make_shared<StreamState>();
};

inline void CudaEvent::record(Stream& stream) {
  checkNotInCallback();
  CUDA_CHECK(cudaSetDevice(index_));
  CUDA_CHECK(cudaEventRecord(event_, static_cast<CudaStream&>(stream).raw()));
  capturedRecord = stream.capturing();
}

inline CudaStream& cudaStreamOf(Stream& s) { return static_cast<CudaStream&>(s); }
inline cudaStream_t rawStream(Stream& s) { return cudaStreamOf(s).raw(); }

}  // namespace sg::cuda::runtime
