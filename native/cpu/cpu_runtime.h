// The CPU backend's internals, shared by its files (the public entry is cpu_backend.h):
//   cpu_backend.cpp    the backend object and its registration
//   cpu_allocator.cpp  the caching host allocator and the device's memory size
//   cpu_streams.cpp    streams (FIFOs served by the shared pool of core/parallel.h), events,
//                      transfers
//   cpu_graphs.cpp     capture into a task list and its replay
//   cpu_ops.cpp        the op methods: each enqueues its kernels (kernels.h) on the stream
// Each queued task is an op (cancellable) or control work (event records and waits, whenDone
// callbacks: never cancelled, since other streams and Promises wait for them), tagged with
// the thread that enqueued it, so that cancelQueued drops only that thread's ops: one
// JavaScript environment (the main thread or a Worker) never cancels another's work.
// Streams own no threads: a stream with queued work is scheduled on the process-wide pool
// (parallelism() threads in all, core/parallel.h), which runs its tasks one at a time in
// order. A wait for an event record that has not completed parks the stream, holding no
// thread, and the record's completion reschedules it; so any number of streams share the
// cores without oversubscribing them, and streams waiting on each other cannot exhaust the
// pool. Stream destructors wait for the queue to drain (they run on the enqueuing thread).
#pragma once
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../core/backend.h"
#include "../core/parallel.h"

namespace sg::cpu_backend {

inline const Device kCpu{DeviceKind::Cpu, 0};

// ---- streams and events (cpu_streams.cpp) -------------------------------------------------

class CpuStream;
class CpuEvent;
struct Capture;

// Thrown for host waits and cross-capture waits that a CUDA graph capture forbids too.
[[noreturn]] inline void captureMisuse(const std::string& what) { throw std::runtime_error(what); }

// Marks events whose latest record was captured into a graph that is now complete: like CUDA,
// such a record cannot be waited for outside its capture.
Capture* endedCapture();

// The live streams, for cancelQueued on the whole device.
struct StreamList {
  std::mutex m;  // held while a stream joins or leaves, and while the list is walked
  std::vector<CpuStream*> streams;
};

StreamList& liveStreams();

// An event's records, shared with queued tasks (which may run after the event object is
// gone). Records are numbered; a record completes when its stream reaches it.
struct EventRecords {
  std::mutex m;
  uint64_t recorded = 0, completed = 0;
  // Called once `completed` reaches the number: host callbacks, and parked streams' wake-ups.
  std::vector<std::pair<uint64_t, std::function<void()>>> waiters;

  // Completes records up to `ticket` and calls the waiters that were waiting for them.
  void complete(uint64_t ticket);

  // False if record `target` has completed; else arranges for `wake` to be called when it
  // completes and returns true. Atomic with complete(): no wake-up is lost.
  bool waitLater(uint64_t target, std::function<void()> wake);
};

// A stream is an ordered queue of tasks that the process-wide pool (core/parallel.h) serves:
// at most one of its tasks runs at a time, on whichever pool thread took it, in FIFO order.
// A wait for an incomplete record parks the stream (it leaves the pool, no thread blocks)
// until that record completes, which reschedules it.
class CpuStream : public Stream, public PoolClient, public std::enable_shared_from_this<CpuStream> {
 public:
  CpuStream() {
    std::lock_guard<std::mutex> lock(liveStreams().m);
    liveStreams().streams.push_back(this);
  }

  ~CpuStream() override {
    {
      std::lock_guard<std::mutex> lock(liveStreams().m);
      auto& v = liveStreams().streams;
      v.erase(std::remove(v.begin(), v.end(), this), v.end());
    }
    // Drains the queue first. Streams are released by the threads that enqueue (JavaScript),
    // never inside a task, so the pool keeps serving meanwhile.
    std::unique_lock<std::mutex> lock(m_);
    drained_.wait(lock, [&] { return phase_ == Phase::Idle && queue_.empty(); });
  }

  Device device() const override { return kCpu; }
  bool capturing() const override { return capture_ != nullptr; }

  // Runs `task` (an op) after the work enqueued so far, or records it while capturing.
  void enqueue(std::function<void()> task);

  // Queues `task` as control work (an event record, a host callback): never cancelled, since
  // other streams and Promises wait for it.
  void enqueueControl(std::function<void()> task) { push(Task{std::move(task), false, {}, {}, 0}); }

  // Queues a wait (control work) for record `target` of `records`.
  void enqueueWait(std::shared_ptr<EventRecords> records, uint64_t target) {
    push(Task{{}, false, {}, std::move(records), target});
  }

  size_t cancelQueued() override {
    const std::thread::id caller = std::this_thread::get_id();
    std::deque<Task> dropped;  // destroyed after the lock: their tensors are released then
    {
      std::lock_guard<std::mutex> lock(m_);
      std::deque<Task> kept;
      for (Task& task : queue_)
        (task.cancellable && task.owner == caller ? dropped : kept).push_back(std::move(task));
      queue_.swap(kept);
      if (!dropped.empty() && error_.empty())
        error_ = "cancelled: " + std::to_string(dropped.size()) +
                 " queued op(s) were dropped before they ran (cancelQueued)";
    }
    return dropped.size();
  }

  void wait(Event& event) override;

  void whenDone(std::function<void(const std::string&)> done) override {
    if (capture_)
      captureMisuse("synchronize: the stream is being captured into a graph; wait after "
                    "endCapture() and launch()");
    enqueueControl([this, done = std::move(done)] {
      std::string error;
      {
        std::lock_guard<std::mutex> lock(m_);
        error.swap(error_);
      }
      done(error);
    });
  }

  // The capture this stream records into (null: none). Only the JavaScript thread, which
  // enqueues all work, reads or changes it.
  Capture* capture_ = nullptr;

 private:
  friend class CpuGraph;
  struct Task {
    std::function<void()> body;  // empty for a wait
    bool cancellable;            // an op (not control work)
    std::thread::id owner;       // the thread that enqueued it: cancelQueued drops only its own
    std::shared_ptr<EventRecords> waitFor;  // a wait: for record `target` of these records
    uint64_t target;
  };

  // Idle: nothing queued, not in the pool. Scheduled: in the pool's queue. Running: a pool
  // thread serves it. Parked: a wait's record is incomplete; its completion reschedules it.
  enum class Phase { Idle, Scheduled, Running, Parked };

  void push(Task task) {
    task.owner = std::this_thread::get_id();
    {
      std::lock_guard<std::mutex> lock(m_);
      queue_.push_back(std::move(task));
      if (phase_ != Phase::Idle) return;  // served, parked or scheduled already
      phase_ = Phase::Scheduled;
    }
    schedule(this);  // safe after unlocking: a scheduled stream is not destroyed
  }

  void serve() override;  // cpu_streams.cpp
  void wake();

  std::mutex m_;
  std::condition_variable drained_;  // the destructor waits for Idle with an empty queue
  std::deque<Task> queue_;
  std::string error_;
  Phase phase_ = Phase::Idle;
};

// Waiting for an event means waiting for the record that was latest when the wait was
// enqueued.
class CpuEvent : public Event, public std::enable_shared_from_this<CpuEvent> {
 public:
  Device device() const override { return kCpu; }

  void record(Stream& stream) override;

  // The capture whose recording holds this event's latest record (null: a real record;
  // endedCapture(): a finished capture).
  Capture* capturedIn = nullptr;

  void recordNow(CpuStream& stream) {
    uint64_t ticket;
    {
      std::lock_guard<std::mutex> lock(records_->m);
      ticket = ++records_->recorded;
    }
    stream.enqueueControl([records = records_, ticket] { records->complete(ticket); });
  }

  void whenDone(std::function<void()> done) override {
    if (capturedIn) captureMisuse(capturedRecordMessage("synchronize"));
    {
      std::lock_guard<std::mutex> lock(records_->m);
      if (records_->completed < records_->recorded) {
        records_->waiters.emplace_back(records_->recorded, std::move(done));
        return;
      }
    }
    done();
  }

  static std::string capturedRecordMessage(const char* what) {
    return std::string(what) + ": the event's latest record was captured into a graph; record "
                                "it outside the capture first";
  }

  // Makes `stream` wait (without blocking a thread) for the current latest record.
  void enqueueWaitOn(CpuStream& stream) {
    uint64_t target;
    {
      std::lock_guard<std::mutex> lock(records_->m);
      target = records_->recorded;
    }
    stream.enqueueWait(records_, target);
  }

 private:
  std::shared_ptr<EventRecords> records_ = std::make_shared<EventRecords>();
};

// A capture in progress: the work of the joined streams, in the order the host enqueued it.
struct Capture {
  struct Item {
    enum Kind { Task, Record, Wait } kind;
    std::shared_ptr<CpuStream> stream;
    std::shared_ptr<CpuEvent> event;  // Record, Wait
    std::function<void()> task;       // Task
  };
  CpuStream* origin = nullptr;
  std::vector<std::shared_ptr<CpuStream>> streams;  // joined, origin first
  std::vector<std::shared_ptr<CpuEvent>> events;    // recorded during the capture
  std::vector<Item> items;
};

inline CpuStream& cpu(Stream& s) { return static_cast<CpuStream&>(s); }

// ---- the backend --------------------------------------------------------------------------

class CpuBackend : public Backend {
 public:
  Device device() const override { return kCpu; }
  std::string deviceName() const override { return "cpu"; }

  // cpu_allocator.cpp
  std::shared_ptr<Storage> allocate(size_t bytes) override;
  size_t memoryBytes() const override;
  void upload(const Tensor& dst, const void* host) override;
  void zero(const Tensor& dst) override;

  // cpu_streams.cpp
  std::shared_ptr<Stream> createStream() override;
  std::shared_ptr<Event> createEvent() override;
  Stream& defaultStream() override;
  size_t cancelQueued() override;
  void download(Stream& s, const Tensor& src, void* host, std::shared_ptr<void> hostOwner) override;
  void uploadAsync(Stream& s, const Tensor& dst, const void* host) override;

  // cpu_graphs.cpp
  void beginCapture(Stream& s) override;
  std::unique_ptr<Graph> endCapture(Stream& s) override;

  // cpu_ops.cpp: the ops of the op table (core/op_table.json)
#include "../core/gen/backend_overrides.inc"

 private:
  // CUDA's rule: a stream that joined a capture must rejoin its origin before the end, i.e.
  // its last recorded item is an event record that the origin waits for afterwards.
  static void checkJoined(const Capture& c);
  static std::string labelError(const char* op, int64_t classes);

  std::unique_ptr<Capture> capture_;
};

}  // namespace sg::cpu_backend
