// The backend interface: one implementation per device kind (CPU always, CUDA when built in).
//
// A Stream is an ordered queue of work; an Event marks a point in a stream that another
// stream (or the host) can wait for. Every op is enqueued on a stream and returns at once.
// Backends trust their arguments: shapes, dtypes and devices are checked in ops.cpp, once,
// for every backend. Parameter gradients accumulate (+=), activation gradients overwrite (=).
//
// Graph capture (CUDA graphs on a GPU, a recorded task list on the CPU): between
// beginCapture(origin) and endCapture(origin), work enqueued on `origin` is recorded instead of
// run, and so is work on any stream that waits for an event recorded during the capture (the
// stream "joins"); every joined stream must be waited for by `origin` before the end. A Graph
// replays the recorded work, with the same cross-stream order, each time it is launched. One
// capture at a time per backend; hosts may not wait on a capturing stream.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "op_types.h"
#include "tensor.h"

namespace sg {

class Event;

// The destructors below tell the stream-order checker (stream_order.h) when it is on.
class Stream {
 public:
  virtual ~Stream() {
    if (order::checking()) order::gone(order::Gone::Stream, this);
  }
  virtual Device device() const = 0;
  // Whether work enqueued now is being recorded into a graph rather than run.
  virtual bool capturing() const = 0;
  // Later work on this stream waits until `event`'s latest record has completed.
  virtual void wait(Event& event) = 0;
  // Calls `done` (on some thread) once all work enqueued so far has run. `error` is empty, or
  // the first failure of an op since the previous callback (the stream then keeps going).
  virtual void whenDone(std::function<void(const std::string& error)> done) = 0;
  // Drops the ops that the calling thread enqueued on this stream and that have not started;
  // returns how many. Event records, waits and whenDone callbacks stay (so no stream or host
  // waits forever), and the next whenDone reports the cancellation as the stream's error.
  // The default (CUDA): 0, since work handed to a GPU stream cannot be withdrawn.
  virtual size_t cancelQueued() { return 0; }
};

class Event {
 public:
  virtual ~Event() {
    if (order::checking()) order::gone(order::Gone::Event, this);
  }
  virtual Device device() const = 0;
  // Marks the current end of `stream`'s queue.
  virtual void record(Stream& stream) = 0;
  // Calls `done` (on some thread) once the latest record has completed (at once if none).
  virtual void whenDone(std::function<void()> done) = 0;
};

class Graph {
 public:
  virtual ~Graph() {
    if (order::checking()) order::gone(order::Gone::Graph, this);
  }
  // Enqueues the recorded work: it starts after the work enqueued on `stream` so far, and
  // later work on `stream` waits for all of it.
  virtual void launch(Stream& stream) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string deviceName() const = 0;

  virtual std::shared_ptr<Storage> allocate(size_t bytes) = 0;
  // The device's memory in bytes: no single allocation can be larger (CPU: physical memory,
  // or a lower cgroup limit; CUDA: the device's total memory).
  virtual size_t memoryBytes() const = 0;
  virtual std::shared_ptr<Stream> createStream() = 0;
  virtual std::shared_ptr<Event> createEvent() = 0;
  virtual Stream& defaultStream() = 0;

  virtual void beginCapture(Stream& origin) = 0;
  // Called (by ops.cpp) for every tensor an op uses while `s` is capturing: a backend whose
  // graph nodes hold raw pointers keeps the memory alive for the graph's lifetime, so that
  // disposing of a tensor a graph still uses cannot free it. The CPU's tasks hold their tensors.
  virtual void keepAlive(Stream& s, const std::shared_ptr<Storage>& storage) {
    (void)s;
    (void)storage;
  }
  // Ends the capture begun on `origin` (also when it fails: the capture is then discarded).
  virtual std::unique_ptr<Graph> endCapture(Stream& origin) = 0;

  // Stream::cancelQueued on every stream of the device; returns the total dropped.
  virtual size_t cancelQueued() { return 0; }

  // Host <-> device. `upload` copies before it returns; `download` copies into `host` once
  // the stream has reached it, at the latest when the stream's next completion (whenDone)
  // settles (CUDA folds the host copy into that completion's callback), and holds `hostOwner`
  // (which keeps `host` valid) until then: the caller may be gone by that time (a Worker
  // terminated with reads pending).
  virtual void upload(const Tensor& dst, const void* host) = 0;
  // A stream-ordered upload: copies `host` (dst.bytes() bytes) into staging memory before it
  // returns, so the caller may reuse its buffer at once, and enqueues the copy into `dst` on
  // `s`: work enqueued on `s` before still sees the old contents, work after the new ones.
  // The host does not wait for the stream (CUDA: pinned staging, cudaMemcpyAsync). Refused
  // while `s` is capturing (a graph would replay the copy of this one buffer).
  virtual void uploadAsync(Stream& s, const Tensor& dst, const void* host) = 0;
  // Sets every byte of `dst` to zero before it returns, like an upload of zeros but without
  // a host buffer of the tensor's size.
  virtual void zero(const Tensor& dst) = 0;
  virtual void download(Stream& s, const Tensor& src, void* host,
                        std::shared_ptr<void> hostOwner) = 0;

  // The ops, one pure virtual method each, declared by the op table (core/op_table.json).
  // Backends trust their arguments: ops.cpp has checked them. `tensor?` arguments arrive as
  // an empty Tensor (no storage) when absent; a group step's hyper tensor is read when the
  // work runs, so a replayed graph sees new values (SGD: hyper = [lr]; Adam: hyper =
  // [lr / (1 - beta1^t), sqrt(1 - beta2^t)]), and velocities are empty without momentum.
#include "gen/backend_ops.inc"
};

// ---- the registry (registry.cpp) -------------------------------------------------------------
// Core knows no backend by name: each backend kind registers what it provides, and every
// lookup below goes through the registry. The addon registers the built-in backends when it
// loads (cpu/cpu_backend.h, cuda/cuda_backend.h); ops look their backend up on every call.
struct BackendProvider {
  // Number of usable devices of this kind (never throws).
  int (*deviceCount)();
  // Why deviceCount() is 0 when the runtime said so with an error; "" otherwise. May be null.
  std::string (*deviceError)();
  // The backend of device `index`, 0 <= index < deviceCount() (created on first use).
  Backend& (*backend)(int index);
  // The TF32 tensor-core GEMM switch; both null for a kind without one.
  void (*setGemmTf32)(bool enabled);
  bool (*gemmTf32)();
};
// Makes `provider` (which must live as long as the process) the provider of `kind`.
// Registering the same provider again (one more Worker loading the addon) changes nothing.
void registerBackend(DeviceKind kind, const BackendProvider* provider);

// The backend of a device; throws ArgumentError if the device does not exist.
Backend& backendFor(Device device);
// Number of CUDA devices usable by this build (0 when built without CUDA or none present).
int cudaDeviceCount();
// Why cudaDeviceCount() is 0 when the CUDA runtime said so with an error (e.g.
// "cudaErrorInsufficientDriver (...)": a driver older than the runtime needs); "" otherwise.
std::string cudaDeviceError();
// Whether a CUDA backend is registered (this build has it compiled in).
bool builtWithCuda();
// Opt-in TF32 tensor cores for CUDA GEMMs (default off: exact fp32). Throws ArgumentError when
// enabling it without a CUDA backend.
void setCudaGemmTf32(bool enabled);
bool cudaGemmTf32();

}  // namespace sg
