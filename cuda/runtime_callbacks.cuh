// The CUDA backend: callbacks, deferred CUDA work and completions.
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

namespace sg::cuda::runtime {

// True while this thread runs one of our stream callbacks (no CUDA calls allowed).
inline thread_local bool tInCallback = false;

struct CallbackScope {
  CallbackScope() { tInCallback = true; }
  ~CallbackScope() { tInCallback = false; }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;
};

// Error texts for callbacks, built on a normal thread (cudaGetErrorString is a CUDA API call).
constexpr int kErrorTexts = 1024;
inline std::atomic<const std::vector<std::string>*> gErrorTexts{nullptr};  // never freed
inline std::once_flag gErrorTextsOnce;

inline void buildErrorTexts() {
  std::call_once(gErrorTextsOnce, [] {
    auto* texts = new std::vector<std::string>();
    texts->reserve(kErrorTexts);
    for (int i = 0; i < kErrorTexts; ++i)
      texts->push_back(cudaErrorText(static_cast<cudaError_t>(i)));
    gErrorTexts.store(texts, std::memory_order_release);
  });
}

// The message for a failure of queued work, usable inside a callback.
inline std::string queuedErrorText(cudaError_t e) {
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

inline Deferred& deferred() {
  static Deferred* d = new Deferred();  // never destroyed: used until the process ends
  return *d;
}

// Runs `work` now, or later if this thread is a callback thread. Never throws.
inline void runOrDefer(std::function<void()> work) {
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
inline void addHostFunc(cudaStream_t stream, cudaHostFn_t fn, Job* job) {
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

// Host-side work of queued transfers, run in order by a host function (runtime_streams.cuh,
// "Host work"): only memcpy, flag reads and pinned-pool hand-backs, so no CUDA calls.
using HostWork = std::vector<std::function<void()>>;

inline void runHostWork(HostWork& work) {
  for (auto& w : work) {
    try {
      w();
    } catch (...) {  // nothing may escape a host function
    }
  }
  work.clear();
}

struct CompletionJob {
  int device;
  std::function<void(const std::string&)> settle;  // the error ("" on success)
  std::function<std::string()> streamError;         // the stream's queued error; may be empty
  HostWork hostWork;  // run by the host function before the job is handed on
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

inline void CUDART_CB completionHostFunc(void* data) {
  CallbackScope scope;
  std::unique_ptr<std::shared_ptr<CompletionJob>> job(
      static_cast<std::shared_ptr<CompletionJob>*>(data));
  try {
    runHostWork((*job)->hostWork);  // e.g. a read's copy out of staging, its label flags
    CompletionThread::instance().reached(*job);
  } catch (...) {
  }
}

// Enqueues `job`'s host function on `stream` (registered first, so that a device failure
// settles it even if CUDA never runs the function). Throws if it cannot be enqueued; then
// the job is forgotten and will not settle.
inline void enqueueCompletion(cudaStream_t stream, std::shared_ptr<CompletionJob> job) {
  CompletionThread& thread = CompletionThread::instance();
  thread.add(job);
  try {
    addHostFunc(stream, completionHostFunc, new std::shared_ptr<CompletionJob>(job));
  } catch (...) {
    thread.remove(job);
    throw;
  }
}

}  // namespace sg::cuda::runtime
