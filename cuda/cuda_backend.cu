// The CUDA backend: streams, events, memory and every op of the Backend interface, calling
// the launchers of gemm.cu, elementwise.cu, batchnorm.cu, loss.cu and optimizer.cu.
//
// Design rules (read these before changing anything here):
//
// Threads. Every entry point first calls cudaSetDevice(index) (any thread may call in).
//   Host functions (cudaLaunchHostFunc) run on a CUDA-owned thread and must not call the
//   CUDA API. So: they only copy bytes, set error strings, hand pinned buffers back to a
//   pool and hand completions to the completion thread; destructors that need CUDA calls
//   (streams, events, graphs, pinned memory over the cache cap) check a thread_local "in a
//   callback" flag and, there, defer their work to a list that the next allocate/
//   createStream/createEvent/upload/download runs. Backend entry points called from a
//   callback throw instead of deadlocking. No mutex that a callback takes is ever held across
//   a CUDA call, so implicit synchronisation in cudaMalloc, cudaFree & co. cannot deadlock
//   against a callback.
//
// Completions. cudaLaunchHostFunc (cudaStreamAddCallback is slated for deprecation) passes no
//   status, and CUDA stops running host functions once the context has failed (a faulted
//   kernel). So whenDone's host function only hands its job to one process-wide completion
//   thread, which checks whether the device has failed (a sticky error) before settling it,
//   and which, while jobs are outstanding, polls the device: after a fault every outstanding
//   job settles with the error, so a Promise rejects instead of never settling.
//
// Streams. Non-blocking streams (never synchronised with the legacy stream); the default
//   stream is one such stream per device, created with the backend. whenDone enqueues a
//   callback that passes the stream's first error since the previous callback: errors found
//   on the device (labels out of range) reach it through a device flag copied to pinned
//   memory and examined by a callback queued right after the op (the stream runs callbacks
//   in order). Errors at enqueue time (a failed launch, out of memory) throw at once.
//   A stream's destructor synchronises it before destroying it (see Memory).
//
// Events. cudaEventDisableTiming; record = cudaEventRecord. whenDone uses a helper stream
//   owned by the event: cudaStreamWaitEvent (which binds the latest record at call time, or
//   is a no-op if there was none) then a callback on that helper stream.
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
//
// Graphs. beginCapture = cudaStreamBeginCapture in relaxed mode (so the allocator may still
//   cudaMalloc); streams join through event waits, as CUDA defines. The Graph holds every
//   tensor a captured op used (keepAlive, from ops.cpp), so disposing of one in JavaScript
//   while the graph lives cannot free memory it writes. While a capture is open the
//   allocator does not fence (a fence's event records would become graph nodes): blocks
//   released then wait for the end of the capture, and those that were handed out during it
//   (ops' scratch, used by graph nodes through raw pointers) go to the Graph, which owns them
//   until it is destroyed. A stream released while it is part of the capture (it can be
//   neither synchronised nor destroyed then) is destroyed after endCapture. A Graph released
//   on a callback thread is destroyed by the next entry point. Label checks need host
//   functions, which a capture cannot hold: captured ops skip the report (the kernels still
//   never read out of range). Host waits on a capturing stream throw.
//
// Transfers. upload is synchronous: chunks go through two pinned staging buffers on a
//   private stream (double buffered), then the stream is synchronised; zero is a
//   cudaMemsetAsync on that stream, synchronised too. download copies
//   into a pinned staging buffer on the caller's stream, then a host function copies it into
//   the caller's host pointer (kept alive by its owner until then) and hands the buffer back to
//   a process-wide pinned pool. A whenDone that cannot be enqueued synchronises the stream
//   before it throws, so that no queued download still writes into a buffer the caller frees.
#include "cuda_backend.h"

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

#include "check.cuh"
#include "gemm.cuh"
#include "kernels.cuh"

namespace sg::cuda {
namespace {

// ============================================================================================
// callbacks and deferred CUDA work
// ============================================================================================

// True while this thread runs one of our stream callbacks (no CUDA calls allowed).
thread_local bool tInCallback = false;

struct CallbackScope {
  CallbackScope() { tInCallback = true; }
  ~CallbackScope() { tInCallback = false; }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;
};

// Error texts for callbacks, built on a normal thread (cudaGetErrorString is a CUDA API call).
constexpr int kErrorTexts = 1024;
std::atomic<const std::vector<std::string>*> gErrorTexts{nullptr};  // never freed
std::once_flag gErrorTextsOnce;

void buildErrorTexts() {
  std::call_once(gErrorTextsOnce, [] {
    auto* texts = new std::vector<std::string>();
    texts->reserve(kErrorTexts);
    for (int i = 0; i < kErrorTexts; ++i)
      texts->push_back(cudaErrorText(static_cast<cudaError_t>(i)));
    gErrorTexts.store(texts, std::memory_order_release);
  });
}

// The message for a failure of queued work, usable inside a callback.
std::string queuedErrorText(cudaError_t e) {
  const int code = static_cast<int>(e);
  const std::vector<std::string>* texts = gErrorTexts.load(std::memory_order_acquire);
  std::string text = texts && code >= 0 && code < kErrorTexts
                         ? (*texts)[code]
                         : "error code " + std::to_string(code);
  return "CUDA error in queued work: " + text;
}

// CUDA work that a callback thread had to put off; run by the next backend entry point.
class Deferred {
 public:
  void push(std::function<void()> work) {
    std::lock_guard<std::mutex> lock(m_);
    list_.push_back(std::move(work));
    pending_.store(true, std::memory_order_release);
  }

  void drain() {
    if (!pending_.load(std::memory_order_acquire)) return;
    std::vector<std::function<void()>> work;
    {
      std::lock_guard<std::mutex> lock(m_);
      work.swap(list_);
      pending_.store(false, std::memory_order_release);
    }
    for (auto& w : work) {
      try {
        w();
      } catch (...) {  // cleanup work: nothing to report to
      }
    }
  }

 private:
  std::mutex m_;
  std::vector<std::function<void()>> list_;
  std::atomic<bool> pending_{false};
};

Deferred& deferred() {
  static Deferred* d = new Deferred();  // never destroyed: used until the process ends
  return *d;
}

// Runs `work` now, or later if this thread is a callback thread. Never throws.
void runOrDefer(std::function<void()> work) {
  if (tInCallback) {
    try {
      deferred().push(std::move(work));
    } catch (...) {  // out of host memory: leak the resource
    }
    return;
  }
  try {
    work();
  } catch (...) {
  }
}

// Enqueues a host function owning `job` (deleted by the function, or here if enqueueing
// fails). After a device fault CUDA may never run it: what must settle then goes through the
// completion thread below, which settles it itself.
template <class Job>
void addHostFunc(cudaStream_t stream, cudaHostFn_t fn, Job* job) {
  const cudaError_t e = cudaLaunchHostFunc(stream, fn, job);
  if (e != cudaSuccess) {
    delete job;
    CUDA_CHECK(e);
  }
}

// ============================================================================================
// completions (whenDone of streams and events)
// ============================================================================================
//
// cudaLaunchHostFunc passes no status, and after a fault (a sticky error: the context is
// lost) CUDA stops running a stream's host functions. So a whenDone host function does not
// settle its Promise itself: it hands the job to this thread, which asks the device whether
// it has failed (cudaStreamQuery on an idle stream of its own returns the sticky error, if
// any) and settles the job with that error or with the stream's own. While jobs are
// outstanding it also polls the device every kPollMs: once the device has failed, every
// outstanding job of it settles with the error, so no Promise waits forever for a host
// function that will not run. Each job settles once (an atomic claim).

struct CompletionJob {
  int device;
  std::function<void(const std::string&)> settle;  // the error ("" on success)
  std::function<std::string()> streamError;         // the stream's queued error; may be empty
  std::atomic<bool> claimed{false};
};

class CompletionThread {
 public:
  static CompletionThread& instance() {
    static CompletionThread* t = new CompletionThread();  // never destroyed (callbacks late)
    return *t;
  }

  // Registers a job before its host function is enqueued (JavaScript thread).
  void add(const std::shared_ptr<CompletionJob>& job) {
    std::lock_guard<std::mutex> lock(m_);
    if (!started_) {
      std::thread([this] { run(); }).detach();
      started_ = true;
    }
    outstanding_.push_back(job);
  }

  // A job that could not be enqueued: forget it (JavaScript thread).
  void remove(const std::shared_ptr<CompletionJob>& job) {
    std::lock_guard<std::mutex> lock(m_);
    outstanding_.erase(std::remove(outstanding_.begin(), outstanding_.end(), job),
                       outstanding_.end());
  }

  // From the host function (CUDA's thread): no CUDA call here.
  void reached(const std::shared_ptr<CompletionJob>& job) {
    {
      std::lock_guard<std::mutex> lock(m_);
      reached_.push_back(job);
    }
    cv_.notify_one();
  }

 private:
  static constexpr int kPollMs = 50;

  void run() {
    std::unique_lock<std::mutex> lock(m_);
    for (;;) {
      cv_.wait_for(lock, std::chrono::milliseconds(kPollMs),
                   [&] { return !reached_.empty(); });
      std::vector<std::shared_ptr<CompletionJob>> reached;
      reached.swap(reached_);
      const bool poll = !outstanding_.empty();
      std::vector<int> devices;
      for (const auto& j : outstanding_)
        if (std::find(devices.begin(), devices.end(), j->device) == devices.end())
          devices.push_back(j->device);
      lock.unlock();
      // The device's state, outside the lock (host functions take it).
      std::vector<std::pair<int, std::string>> failed;
      if (poll || !reached.empty()) {
        for (const auto& j : reached)
          if (std::find(devices.begin(), devices.end(), j->device) == devices.end())
            devices.push_back(j->device);
        for (int d : devices) {
          const std::string e = deviceFailure(d);
          if (!e.empty()) failed.push_back({d, e});
        }
      }
      auto failureOf = [&](int d) -> std::string {
        for (auto& [dev, e] : failed)
          if (dev == d) return e;
        return "";
      };
      for (const auto& j : reached) settle(*j, failureOf(j->device));
      lock.lock();
      std::vector<std::shared_ptr<CompletionJob>> orphaned;
      auto it = std::remove_if(outstanding_.begin(), outstanding_.end(),
                               [&](const std::shared_ptr<CompletionJob>& j) {
                                 if (j->claimed.load()) return true;
                                 if (failureOf(j->device).empty()) return false;
                                 orphaned.push_back(j);
                                 return true;
                               });
      outstanding_.erase(it, outstanding_.end());
      if (!orphaned.empty()) {
        lock.unlock();
        for (const auto& j : orphaned) settle(*j, failureOf(j->device));
        lock.lock();
      }
    }
  }

  // The device's sticky error, "" while it is healthy (a normal thread: CUDA calls allowed).
  std::string deviceFailure(int device) {
    if (probes_.size() <= static_cast<size_t>(device)) probes_.resize(device + 1, nullptr);
    if (cudaSetDevice(device) != cudaSuccess) return "";
    if (!probes_[device] &&
        cudaStreamCreateWithFlags(&probes_[device], cudaStreamNonBlocking) != cudaSuccess) {
      const cudaError_t e = cudaGetLastError();
      probes_[device] = nullptr;
      return e == cudaErrorMemoryAllocation || e == cudaSuccess ? "" : queuedErrorText(e);
    }
    const cudaError_t e = cudaStreamQuery(probes_[device]);  // nothing is ever queued on it
    (void)cudaGetLastError();
    return e == cudaSuccess || e == cudaErrorNotReady ? "" : queuedErrorText(e);
  }

  static void settle(CompletionJob& job, const std::string& deviceError) {
    if (job.claimed.exchange(true)) return;
    try {
      std::string error = job.streamError ? job.streamError() : std::string();
      if (error.empty()) error = deviceError;
      job.settle(error);
    } catch (...) {  // nothing may escape
    }
  }

  std::mutex m_;
  std::condition_variable cv_;
  bool started_ = false;
  std::vector<std::shared_ptr<CompletionJob>> outstanding_;
  std::vector<std::shared_ptr<CompletionJob>> reached_;
  std::vector<cudaStream_t> probes_;  // the completion thread's only
};

void CUDART_CB completionHostFunc(void* data) {
  CallbackScope scope;
  std::unique_ptr<std::shared_ptr<CompletionJob>> job(
      static_cast<std::shared_ptr<CompletionJob>*>(data));
  try {
    CompletionThread::instance().reached(*job);
  } catch (...) {
  }
}

// Enqueues `job`'s host function on `stream` (registered first, so that a device failure
// settles it even if CUDA never runs the function). Throws if it cannot be enqueued; then
// the job is forgotten and will not settle.
void enqueueCompletion(cudaStream_t stream, std::shared_ptr<CompletionJob> job) {
  CompletionThread& thread = CompletionThread::instance();
  thread.add(job);
  try {
    addHostFunc(stream, completionHostFunc, new std::shared_ptr<CompletionJob>(job));
  } catch (...) {
    thread.remove(job);
    throw;
  }
}

// ============================================================================================
// pinned host memory
// ============================================================================================

// Sizes rounded so that nearby requests share blocks (at most 1/16 wasted).
size_t roundUpBytes(size_t bytes) {
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

PinnedPool& pinnedPool() {
  static PinnedPool* pool = new PinnedPool();  // never destroyed: callbacks may come late
  return *pool;
}

// ============================================================================================
// device memory (see "Memory" in the file comment)
// ============================================================================================

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

// ============================================================================================
// streams and events
// ============================================================================================

// The first error of queued work since the last whenDone callback.
struct StreamState {
  std::mutex m;
  std::string error;

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
};

struct DownloadJob {
  void* staging;
  size_t stagingBytes;
  void* host;
  size_t bytes;
  std::shared_ptr<void> hostOwner;  // keeps `host` valid until the copy into it
};

// Runs after the device-to-host copy into `staging`. After a fault CUDA does not run it (the
// staging buffer is then leaked, and the stream's next whenDone reports the fault).
void CUDART_CB downloadHostFunc(void* data) {
  CallbackScope scope;
  std::unique_ptr<DownloadJob> job(static_cast<DownloadJob*>(data));
  try {
    std::memcpy(job->host, job->staging, job->bytes);
    pinnedPool().give(job->staging, job->stagingBytes);
  } catch (...) {
  }
}

struct FlagJob {
  std::shared_ptr<StreamState> state;
  int* pinnedFlag;
  size_t pinnedBytes;
  std::string message;
};

void CUDART_CB flagHostFunc(void* data) {
  CallbackScope scope;
  std::unique_ptr<FlagJob> job(static_cast<FlagJob*>(data));
  try {
    if (*job->pinnedFlag != 0) job->state->setError(job->message);
    pinnedPool().give(job->pinnedFlag, job->pinnedBytes);
  } catch (...) {
  }
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
    auto destroy = [index, stream, registry] {
      (void)cudaSetDevice(index);
      (void)cudaStreamSynchronize(stream);
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
    try {
      enqueueCompletion(stream_, std::move(job));
    } catch (...) {
      // A read() queued a download into the caller's buffer just before this whenDone; the
      // caller frees that buffer when this throws. Let the queued work finish first (on a
      // failed device nothing more runs, and this returns at once).
      (void)cudaStreamSynchronize(stream_);
      (void)cudaGetLastError();
      throw;
    }
  }

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

void CudaEvent::record(Stream& stream) {
  checkNotInCallback();
  CUDA_CHECK(cudaSetDevice(index_));
  CUDA_CHECK(cudaEventRecord(event_, static_cast<CudaStream&>(stream).raw()));
  capturedRecord = stream.capturing();
}

// An instantiated CUDA graph and the device blocks its nodes use.
class CudaGraph final : public Graph {
 public:
  CudaGraph(int index, cudaGraph_t graph, cudaGraphExec_t exec, DeviceAllocator& allocator,
            std::vector<DeviceAllocator::Block> blocks, std::vector<std::shared_ptr<Storage>> kept)
      : index_(index), graph_(graph), exec_(exec), allocator_(allocator), blocks_(std::move(blocks)),
        kept_(std::move(kept)) {
    CUDA_CHECK(cudaEventCreateWithFlags(&lastLaunch_, cudaEventDisableTiming));
  }

  ~CudaGraph() override {
    // Waits for the last launch (destruction is rare: the end of a fit), then frees; from a
    // callback thread (no CUDA calls there) all of it is deferred to the next entry point.
    auto destroy = [index = index_, graph = graph_, exec = exec_, lastLaunch = lastLaunch_,
                    launched = launched_, allocator = &allocator_, blocks = std::move(blocks_),
                    kept = std::move(kept_)]() mutable {
      (void)cudaSetDevice(index);
      if (launched) (void)cudaEventSynchronize(lastLaunch);
      (void)cudaEventDestroy(lastLaunch);
      (void)cudaGraphExecDestroy(exec);
      (void)cudaGraphDestroy(graph);
      (void)cudaGetLastError();
      allocator->releaseAll(blocks);
      kept.clear();  // their blocks retire as usual: reused after the next fence
    };
    runOrDefer(std::move(destroy));
  }

  void launch(Stream& stream) override {
    CudaEvent::checkNotInCallback();
    CUDA_CHECK(cudaSetDevice(index_));
    const cudaStream_t s = static_cast<CudaStream&>(stream).raw();
    CUDA_CHECK(cudaGraphLaunch(exec_, s));
    CUDA_CHECK(cudaEventRecord(lastLaunch_, s));
    launched_ = true;
  }

 private:
  const int index_;
  cudaGraph_t graph_;
  cudaGraphExec_t exec_;
  DeviceAllocator& allocator_;
  std::vector<DeviceAllocator::Block> blocks_;      // released during the capture
  std::vector<std::shared_ptr<Storage>> kept_;     // every tensor a captured op used
  cudaEvent_t lastLaunch_ = nullptr;
  bool launched_ = false;
};

CudaStream& cudaStreamOf(Stream& s) { return static_cast<CudaStream&>(s); }
cudaStream_t rawStream(Stream& s) { return cudaStreamOf(s).raw(); }

// ============================================================================================
// the backend
// ============================================================================================

constexpr size_t kUploadChunk = size_t(4) << 20;

std::string labelError(const char* op, int64_t classes) {
  return std::string(op) + ": a label is outside [0, " + std::to_string(classes) + ")";
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int index) : index_(index), allocator_(index, registry_) {
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

  Device device() const override { return Device{DeviceKind::Cuda, index_}; }
  std::string deviceName() const override { return name_; }

  std::shared_ptr<Storage> allocate(size_t bytes) override {
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

  std::shared_ptr<Stream> createStream() override {
    enter();
    return std::make_shared<CudaStream>(index_, registry_);
  }

  std::shared_ptr<Event> createEvent() override {
    enter();
    return std::make_shared<CudaEvent>(index_);
  }

  Stream& defaultStream() override { return *default_; }

  size_t memoryBytes() const override { return memoryBytes_; }

  void beginCapture(Stream& origin) override {
    enter();
    const cudaStream_t s = rawStream(origin);
    {
      std::lock_guard<std::mutex> lock(registry_.m);
      if (registry_.captureOrigin)
        throw std::runtime_error("beginCapture: another capture is in progress on " +
                                 device().name());
      registry_.captureOrigin = s;
    }
    allocator_.beginCapture();
    const cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
    if (e != cudaSuccess) {
      allocator_.releaseAll(allocator_.endCapture());
      std::lock_guard<std::mutex> lock(registry_.m);
      registry_.captureOrigin = nullptr;
    }
    CUDA_CHECK(e);
  }

  void keepAlive(Stream&, const std::shared_ptr<Storage>& storage) override {
    captureKept_.push_back(storage);  // the JavaScript thread only, like every op call
  }

  std::unique_ptr<Graph> endCapture(Stream& origin) override {
    enter();
    const cudaStream_t s = rawStream(origin);
    {
      std::lock_guard<std::mutex> lock(registry_.m);
      if (registry_.captureOrigin != s)
        throw std::runtime_error("endCapture: no capture was begun on this stream");
      registry_.captureOrigin = nullptr;
    }
    std::vector<std::shared_ptr<Storage>> kept;
    kept.swap(captureKept_);
    std::vector<DeviceAllocator::Block> blocks = allocator_.endCapture();
    cudaGraph_t graph = nullptr;
    cudaError_t e = cudaStreamEndCapture(s, &graph);  // fails if a joined stream never rejoined
    std::vector<std::function<void()>> afterCapture;
    {
      std::lock_guard<std::mutex> lock(registry_.m);
      afterCapture.swap(registry_.afterCapture);
    }
    for (auto& destroy : afterCapture) destroy();  // streams released during the capture
    cudaGraphExec_t exec = nullptr;
    if (e == cudaSuccess) {
      e = cudaGraphInstantiate(&exec, graph, 0);
      if (e != cudaSuccess) (void)cudaGraphDestroy(graph);
    }
    if (e != cudaSuccess) {
      allocator_.releaseAll(blocks);  // nothing captured will run
      CUDA_CHECK(e);
    }
    try {
      return std::make_unique<CudaGraph>(index_, graph, exec, allocator_, std::move(blocks),
                                         std::move(kept));
    } catch (...) {
      (void)cudaGraphExecDestroy(exec);
      (void)cudaGraphDestroy(graph);
      throw;
    }
  }

  void upload(const Tensor& dst, const void* host) override {
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
  void zero(const Tensor& dst) override {
    const size_t bytes = dst.bytes();
    if (bytes == 0) return;
    enter();
    std::lock_guard<std::mutex> lock(uploadM_);
    if (!uploadStream_) CUDA_CHECK(cudaStreamCreateWithFlags(&uploadStream_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaMemsetAsync(dst.storage->data(), 0, bytes, uploadStream_));
    CUDA_CHECK(cudaStreamSynchronize(uploadStream_));
  }

  void download(Stream& s, const Tensor& src, void* host, std::shared_ptr<void> hostOwner) override {
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
    // If this throws, the queued copy may still write `staging`: it is leaked, not reused.
    addHostFunc(cs.raw(), downloadHostFunc, new DownloadJob{staging, rounded, host, bytes, std::move(hostOwner)});
  }

  void copy(Stream& s, const Tensor& src, const Tensor& dst) override {
    use();
    const size_t bytes = src.bytes();
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst.storage->data(), src.storage->data(), bytes,
                               cudaMemcpyDeviceToDevice, rawStream(s)));
  }

  void fill(Stream& s, const Tensor& y, double value) override {
    use();
    // Zeros (every gradient buffer, every step): all-zero bytes in float32 and int32, written
    // by the copy engine's memset rather than a kernel. -0.0 is not all-zero bytes.
    if (value == 0.0 && !std::signbit(value)) {
      if (y.bytes() > 0)
        CUDA_CHECK(cudaMemsetAsync(y.storage->data(), 0, y.bytes(), rawStream(s)));
      return;
    }
    if (y.dtype == DType::Int32)
      launchFillInt(rawStream(s), y.i32(), y.numel(), static_cast<int32_t>(value));
    else
      launchFill(rawStream(s), y.f32(), y.numel(), static_cast<float>(value));
  }

  void axpby(Stream& s, float a, const Tensor& x, float b, const Tensor& y) override {
    use();
    launchAxpby(rawStream(s), x.numel(), a, x.f32(), b, y.f32());
  }

  void gemm(Stream& s, const Tensor& a, const Tensor& b, const Tensor& c, bool transA,
            bool transB, float alpha, float beta) override {
    use();
    const int64_t M = c.shape[0], N = c.shape[1], K = transA ? a.shape[0] : a.shape[1];
    std::shared_ptr<Storage> workspace = gemmWorkspace(M, N, K);
    launchSgemm(rawStream(s), transA, transB, M, N, K, alpha, a.f32(), a.shape[1], b.f32(),
                b.shape[1], beta, c.f32(), N, numSMs_, tf32Capable_, nullptr, -1,
                workspace ? static_cast<float*>(workspace->data()) : nullptr);
  }  // workspace released here, after its last use was enqueued

  void linearForward(Stream& s, const Tensor& x, const Tensor& w, const Tensor& bias,
                     const Tensor& y, std::optional<Activation> act) override {
    use();
    const int64_t B = x.shape[0], in = x.shape[1], out = w.shape[0];
    std::shared_ptr<Storage> workspace = gemmWorkspace(B, out, in);
    launchSgemm(rawStream(s), false, true, B, out, in, 1.0f, x.f32(), in, w.f32(), in, 0.0f,
                y.f32(), out, numSMs_, tf32Capable_, bias.storage ? bias.f32() : nullptr,
                act ? static_cast<int>(*act) : -1,
                workspace ? static_cast<float*>(workspace->data()) : nullptr);
  }

  void addBias(Stream& s, const Tensor& y, const Tensor& bias) override {
    use();
    launchAddBias(rawStream(s), y.f32(), bias.f32(), y.shape[0], y.shape[1]);
  }

  void biasBackward(Stream& s, const Tensor& dy, const Tensor& dbias) override {
    use();
    launchBiasBackward(rawStream(s), dy.f32(), dbias.f32(), dy.shape[0], dy.shape[1]);
  }

  void activationForward(Stream& s, Activation act, const Tensor& x, const Tensor& y) override {
    use();
    launchActivationForward(rawStream(s), act, x.f32(), y.f32(), x.numel());
  }

  void activationBackward(Stream& s, Activation act, const Tensor& y, const Tensor& dy,
                          const Tensor& dx) override {
    use();
    launchActivationBackward(rawStream(s), act, y.f32(), dy.f32(), dx.f32(), y.numel());
  }

  void batchNormForward(Stream& s, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                        const Tensor& y, const Tensor& runningMean, const Tensor& runningVar,
                        const Tensor& saveMean, const Tensor& saveInvStd, float momentum,
                        float eps, bool training) override {
    use();
    launchBatchNormForward(rawStream(s), x.f32(), gamma.f32(), beta.f32(), y.f32(),
                           runningMean.f32(), runningVar.f32(), saveMean.f32(), saveInvStd.f32(),
                           x.shape[0], x.shape[1], momentum, eps, training);
  }

  void batchNormBackward(Stream& s, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                         const Tensor& saveMean, const Tensor& saveInvStd, const Tensor& dx,
                         const Tensor& dgamma, const Tensor& dbeta) override {
    use();
    launchBatchNormBackward(rawStream(s), x.f32(), dy.f32(), gamma.f32(), saveMean.f32(),
                            saveInvStd.f32(), dx.f32(), dgamma.f32(), dbeta.f32(), x.shape[0],
                            x.shape[1]);
  }

  void softmaxCrossEntropyForward(Stream& s, const Tensor& logits, const Tensor& labels,
                                  const Tensor& probs, const Tensor& loss) override {
    use();
    const int64_t rows = logits.shape[0], classes = logits.shape[1];
    // Scratch: rows doubles of per-row losses, then the label flag.
    const size_t flagOffset = static_cast<size_t>(rows) * sizeof(double);
    std::shared_ptr<Storage> scratch = allocate(flagOffset + sizeof(double));
    double* rowLoss = static_cast<double*>(scratch->data());
    int* flag = reinterpret_cast<int*>(static_cast<char*>(scratch->data()) + flagOffset);
    cudaStream_t st = rawStream(s);
    launchLabelCheck(st, labels.i32(), rows, classes, flag);
    launchSoftmaxCrossEntropyForward(st, logits.f32(), labels.i32(), probs.f32(), loss.f32(),
                                     rows, classes, rowLoss, flag);
    reportLabelErrors(s, flag, labelError("softmaxCrossEntropyForward", classes));
  }  // scratch released here, after its last use was enqueued

  void softmaxCrossEntropyBackward(Stream& s, const Tensor& probs, const Tensor& labels,
                                   const Tensor& dlogits, float scale) override {
    use();
    launchSoftmaxCrossEntropyBackward(rawStream(s), probs.f32(), labels.i32(), dlogits.f32(),
                                      probs.shape[0], probs.shape[1], scale);
  }

  void mseForward(Stream& s, const Tensor& pred, const Tensor& target,
                  const Tensor& loss) override {
    use();
    const int64_t n = pred.numel();
    std::shared_ptr<Storage> scratch = allocate(mseScratchCount(n) * sizeof(double));
    launchMseForward(rawStream(s), pred.f32(), target.f32(), loss.f32(), n,
                     static_cast<double*>(scratch->data()));
  }

  void mseBackward(Stream& s, const Tensor& pred, const Tensor& target, const Tensor& dpred,
                   float scale) override {
    use();
    launchMseBackward(rawStream(s), pred.f32(), target.f32(), dpred.f32(), pred.numel(), scale);
  }

  void oneHot(Stream& s, const Tensor& labels, const Tensor& out) override {
    use();
    const int64_t rows = out.shape[0], classes = out.shape[1];
    std::shared_ptr<Storage> scratch = allocate(sizeof(int));
    int* flag = static_cast<int*>(scratch->data());
    cudaStream_t st = rawStream(s);
    launchLabelCheck(st, labels.i32(), rows, classes, flag);
    launchOneHot(st, labels.i32(), out.f32(), rows, classes, flag);
    reportLabelErrors(s, flag, labelError("oneHot", classes));
  }

  void concatColumns(Stream& s, const Tensor& a, const Tensor& b, const Tensor& out) override {
    use();
    launchConcatColumns(rawStream(s), a.f32(), b.f32(), out.f32(), a.shape[0], a.shape[1],
                        b.shape[1]);
  }

  void splitColumns(Stream& s, const Tensor& dout, const Tensor& da, const Tensor& db) override {
    use();
    const int64_t colsA = da.storage ? da.shape[1] : dout.shape[1] - db.shape[1];
    launchSplitColumns(rawStream(s), dout.f32(), da.storage ? da.f32() : nullptr,
                       db.storage ? db.f32() : nullptr, dout.shape[0], colsA,
                       dout.shape[1] - colsA);
  }

  void writeScalars(Stream& s, const Tensor& y, const std::vector<float>& values) override {
    use();
    launchWriteScalars(rawStream(s), y.f32(), values);
  }

  void sgdStepGroup(Stream& s, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                    const std::vector<Tensor>& velocities, const Tensor& hyper, float momentum,
                    float weightDecay) override {
    use();
    std::vector<GroupTensor> group;
    for (size_t i = 0; i < params.size(); ++i)
      group.push_back({params[i].f32(), grads[i].f32(),
                       velocities.empty() ? nullptr : velocities[i].f32(), nullptr,
                       params[i].numel()});
    launchSgdStepGroup(rawStream(s), group, hyper.f32(), momentum, weightDecay);
  }

  void adamStepGroup(Stream& s, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                     const std::vector<Tensor>& ms, const std::vector<Tensor>& vs,
                     const Tensor& hyper, float beta1, float beta2, float eps,
                     float weightDecay) override {
    use();
    std::vector<GroupTensor> group;
    for (size_t i = 0; i < params.size(); ++i)
      group.push_back({params[i].f32(), grads[i].f32(), ms[i].f32(), vs[i].f32(),
                       params[i].numel()});
    launchAdamStepGroup(rawStream(s), group, hyper.f32(), beta1, beta2, eps, weightDecay);
  }

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

  // Scratch for a split-K GEMM (gemm.cu), or null when the product is not split. Released by
  // the caller right after the launch, like every op's scratch (fenced before reuse).
  std::shared_ptr<Storage> gemmWorkspace(int64_t M, int64_t N, int64_t K) {
    const size_t floats = sgemmWorkspaceFloats(M, N, K, numSMs_, tf32Capable_);
    return floats > 0 ? allocate(floats * sizeof(float)) : nullptr;
  }

  // After an op that wrote `flag` on stream s: copy the flag to pinned memory and queue a
  // callback that records `message` as the stream's error if it is set.
  void reportLabelErrors(Stream& s, const int* flag, std::string message) {
    CudaStream& cs = cudaStreamOf(s);
    if (cs.capturing()) return;  // no host callbacks in a graph (see "Graphs")
    size_t rounded = 0;
    int* pinned = static_cast<int*>(pinnedPool().take(sizeof(int), &rounded));
    const cudaError_t e =
        cudaMemcpyAsync(pinned, flag, sizeof(int), cudaMemcpyDeviceToHost, cs.raw());
    if (e != cudaSuccess) {
      pinnedPool().give(pinned, rounded);  // nothing was queued
      CUDA_CHECK(e);
    }
    addHostFunc(cs.raw(), flagHostFunc,
                new FlagJob{cs.state(), pinned, rounded, std::move(message)});
  }

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
};

}  // namespace

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

void registerCudaBackend() {
  static const BackendProvider provider{deviceCount, deviceCountError, backend, setGemmTf32,
                                        gemmTf32};
  registerBackend(DeviceKind::Cuda, &provider);
}

}  // namespace sg::cuda
