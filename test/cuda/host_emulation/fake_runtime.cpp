// A fake CUDA runtime on the CPU: the runtime calls that cuda/cuda_backend.cu makes, with one
// worker thread per stream, so that the backend's own logic (the allocator's cross-stream
// fences, events, capture bookkeeping, the completion path) runs and is tested without a GPU
// (fake_test.cpp). Device memory is host memory; kernels run through the emulation of
// cuda_runtime.h, queued on their stream (emu::submitHook). Not CUDA: what it models is
//   - a stream runs its work in order on its worker; cudaStreamQuery/Synchronize see it idle;
//   - an event record is a marker in the stream; a wait on an event blocks the waiting
//     stream's worker until the marker has run (the latest record at the time of the wait);
//   - a capture records the work enqueued on the capturing streams (the origin and those that
//     joined it by waiting on an event recorded in it) into one list, in enqueue order, and a
//     graph launch runs that list on the launching stream; a synchronisation, a destroy or a
//     cudaFree while a capture is open is a misuse (counted: fake::misuses) and invalidates it;
//   - fake::fail(e) is a device fault: work not yet run is dropped (host functions too, as
//     CUDA does) and every later call returns e;
//   - fake::setMemoryLimit caps cudaMalloc (cudaErrorMemoryAllocation beyond it);
//   - fake::stall(s, true) holds a stream's queue (to make "still pending" deterministic).
#include "fake_runtime.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace {

struct Capture;

}  // namespace

struct CUstream_st {
  std::mutex m;
  std::condition_variable cv;
  std::deque<std::function<void()>> queue;
  bool busy = false, stalled = false, stop = false;
  Capture* capture = nullptr;  // guarded by gM (below)
  std::thread worker;
};

struct CUevent_st {
  std::mutex m;
  std::condition_variable cv;
  uint64_t recorded = 0, completed = 0;
  Capture* capturedIn = nullptr;  // the capture its latest record was made in
};

struct CUgraph_st {
  std::vector<std::function<void()>> work;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> work;
};

namespace {

struct Capture {
  cudaStream_t origin;
  std::vector<std::function<void()>> work;
  bool invalidated = false;
};

std::mutex gM;  // captures, memory, the stream list
std::set<Capture*> gCaptures;
std::map<void*, size_t> gDevice;
size_t gInUse = 0, gLimit = size_t(1) << 34;
std::vector<cudaStream_t> gStreams;
std::atomic<int> gFailed{0};
std::atomic<int> gMisuses{0};
std::atomic<int> gFrees{0};
std::atomic<int> gHostFunctions{0};

cudaError_t failed() { return static_cast<cudaError_t>(gFailed.load()); }

void misuse(Capture* c) {
  ++gMisuses;
  if (c) c->invalidated = true;
}

Capture* captureOf(cudaStream_t s) {
  std::lock_guard<std::mutex> lock(gM);
  return s->capture;
}

void workerLoop(cudaStream_t s) {
  std::unique_lock<std::mutex> lock(s->m);
  for (;;) {
    s->cv.wait(lock, [&] { return s->stop || (!s->stalled && !s->queue.empty()); });
    if (s->queue.empty() || s->stalled) return;  // stop
    std::function<void()> work = std::move(s->queue.front());
    s->queue.pop_front();
    s->busy = true;
    lock.unlock();
    if (!gFailed.load()) work();  // after a fault nothing more runs
    lock.lock();
    s->busy = false;
    s->cv.notify_all();
  }
}

// Queues `work` on s, or records it into s's capture.
cudaError_t enqueue(cudaStream_t s, std::function<void()> work) {
  if (gFailed.load()) return failed();
  {
    std::lock_guard<std::mutex> lock(gM);
    if (Capture* c = s->capture) {
      c->work.push_back(std::move(work));
      return cudaSuccess;
    }
  }
  std::lock_guard<std::mutex> lock(s->m);
  s->queue.push_back(std::move(work));
  s->cv.notify_all();
  return cudaSuccess;
}

bool idle(cudaStream_t s) { return s->queue.empty() && !s->busy; }

}  // namespace

namespace fake {

void install() {
  emu::submitHook = [](cudaStream_t s, std::function<void()> work) {
    const cudaError_t e = enqueue(s, std::move(work));
    if (e != cudaSuccess) emu::lastError = e;
  };
}
void stall(cudaStream_t s, bool on) {
  std::lock_guard<std::mutex> lock(s->m);
  s->stalled = on;
  s->cv.notify_all();
}
void fail(cudaError_t e) { gFailed.store(e); }
int misuses() { return gMisuses.load(); }
int frees() { return gFrees.load(); }
int hostFunctions() { return gHostFunctions.load(); }
void setMemoryLimit(size_t bytes) {
  std::lock_guard<std::mutex> lock(gM);
  gLimit = bytes;
}
size_t memoryInUse() {
  std::lock_guard<std::mutex> lock(gM);
  return gInUse;
}
std::vector<cudaStream_t> streams() {
  std::lock_guard<std::mutex> lock(gM);
  return gStreams;
}

}  // namespace fake

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int) {
  std::snprintf(prop->name, sizeof prop->name, "fake CUDA device (CPU threads)");
  std::lock_guard<std::mutex> lock(gM);
  prop->totalGlobalMem = gLimit;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int) {
  *value = attr == cudaDevAttrMultiProcessorCount ? 132 : 9;
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* freeBytes, size_t* totalBytes) {
  std::lock_guard<std::mutex> lock(gM);
  *totalBytes = gLimit;
  *freeBytes = gLimit > gInUse ? gLimit - gInUse : 0;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (gFailed.load()) return failed();
  std::lock_guard<std::mutex> lock(gM);
  if (gInUse + bytes > gLimit) return cudaErrorMemoryAllocation;
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  gDevice[*p] = bytes;
  gInUse += bytes;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  std::lock_guard<std::mutex> lock(gM);
  ++gFrees;
  for (Capture* c : gCaptures) misuse(c);  // cudaFree synchronises the device
  auto it = gDevice.find(p);
  if (it == gDevice.end()) return cudaErrorInvalidValue;
  gInUse -= it->second;
  gDevice.erase(it);
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  auto* st = new CUstream_st();
  st->worker = std::thread(workerLoop, st);
  std::lock_guard<std::mutex> lock(gM);
  gStreams.push_back(st);
  *s = st;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  {
    std::lock_guard<std::mutex> lock(gM);
    if (s->capture) {
      misuse(s->capture);
      return cudaErrorStreamCaptureUnsupported;
    }
    gStreams.erase(std::remove(gStreams.begin(), gStreams.end(), s), gStreams.end());
  }
  {
    // As CUDA: returns at once; the queued work still runs, then the stream goes.
    std::unique_lock<std::mutex> lock(s->m);
    s->stalled = false;
    s->cv.notify_all();
    s->cv.wait(lock, [&] { return idle(s) || gFailed.load(); });
    s->stop = true;
    s->queue.clear();
    s->cv.notify_all();
  }
  s->worker.join();
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (Capture* c = captureOf(s)) {
    std::lock_guard<std::mutex> lock(gM);
    misuse(c);
    return cudaErrorStreamCaptureUnsupported;
  }
  std::unique_lock<std::mutex> lock(s->m);
  // Polled, so that a fault (which empties nothing) ends the wait too.
  while (!idle(s) && !gFailed.load()) s->cv.wait_for(lock, std::chrono::milliseconds(5));
  return failed();
}
cudaError_t cudaStreamQuery(cudaStream_t s) {
  if (gFailed.load()) return failed();
  std::lock_guard<std::mutex> lock(s->m);
  return idle(s) ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status) {
  std::lock_guard<std::mutex> lock(gM);
  *status = !s->capture ? cudaStreamCaptureStatusNone
            : s->capture->invalidated ? cudaStreamCaptureStatusInvalidated
                                      : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  std::lock_guard<std::mutex> lock(gM);
  if (s->capture) return cudaErrorIllegalState;
  auto* c = new Capture{s, {}, false};
  gCaptures.insert(c);
  s->capture = c;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* graph) {
  std::lock_guard<std::mutex> lock(gM);
  Capture* c = s->capture;
  if (!c || c->origin != s) return cudaErrorIllegalState;
  for (cudaStream_t t : gStreams)
    if (t->capture == c) t->capture = nullptr;
  gCaptures.erase(c);
  std::unique_ptr<Capture> owned(c);
  *graph = nullptr;
  if (c->invalidated) return cudaErrorStreamCaptureInvalidated;
  *graph = new CUgraph_st{std::move(c->work)};
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new CUevent_st();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  // Pending records still reference it: a fake keeps it (a few bytes per event).
  (void)e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (gFailed.load()) return failed();
  if (Capture* c = captureOf(s)) {
    std::lock_guard<std::mutex> lock(e->m);
    e->capturedIn = c;
    return cudaSuccess;
  }
  uint64_t gen;
  {
    std::lock_guard<std::mutex> lock(e->m);
    e->capturedIn = nullptr;
    gen = ++e->recorded;
  }
  return enqueue(s, [e, gen] {
    std::lock_guard<std::mutex> lock(e->m);
    e->completed = std::max(e->completed, gen);
    e->cv.notify_all();
  });
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
  if (gFailed.load()) return failed();
  std::lock_guard<std::mutex> lock(e->m);
  return e->completed >= e->recorded ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  std::unique_lock<std::mutex> lock(e->m);
  const uint64_t gen = e->recorded;
  while (e->completed < gen && !gFailed.load()) e->cv.wait_for(lock, std::chrono::milliseconds(5));
  return failed();
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  if (gFailed.load()) return failed();
  uint64_t gen;
  Capture* captured;
  {
    std::lock_guard<std::mutex> lock(e->m);
    gen = e->recorded;
    captured = e->capturedIn;
  }
  if (captured) {  // joins s to the capture (one list in enqueue order: no wait needed)
    std::lock_guard<std::mutex> lock(gM);
    if (!gCaptures.count(captured)) return cudaErrorIllegalState;
    if (s->capture && s->capture != captured) return cudaErrorIllegalState;
    s->capture = captured;
    return cudaSuccess;
  }
  if (gen == 0) return cudaSuccess;  // never recorded: no-op, as CUDA
  return enqueue(s, [e, gen] {
    std::unique_lock<std::mutex> lock(e->m);
    while (e->completed < gen && !gFailed.load()) e->cv.wait_for(lock, std::chrono::milliseconds(5));
  });
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind,
                            cudaStream_t s) {
  return enqueue(s, [dst, src, bytes] { std::memcpy(dst, src, bytes); });
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s) {
  return enqueue(s, [p, value, bytes] { std::memset(p, value, bytes); });
}
cudaError_t cudaLaunchHostFunc(cudaStream_t s, cudaHostFn_t fn, void* data) {
  ++gHostFunctions;
  return enqueue(s, [fn, data] { fn(data); });
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  *exec = new CUgraphExec_st{graph->work};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
  return enqueue(s, [exec] {
    for (auto& w : exec->work) w();
  });
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
