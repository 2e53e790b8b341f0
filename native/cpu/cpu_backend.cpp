// CPU backend: streams as worker threads, events as counters, a caching host allocator.
//
// Each queued task is an op (cancellable) or control work (event records and waits, whenDone
// callbacks: never cancelled, since other streams and Promises wait for them), tagged with
// the thread that enqueued it, so that cancelQueued drops only that thread's ops: one
// JavaScript environment (the main thread or a Worker) never cancels another's work.
#include "cpu_backend.h"

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels.h"

namespace sg {
namespace {

const Device kCpu{DeviceKind::Cpu, 0};

// ---- memory -----------------------------------------------------------------------------

// Training allocates the same sizes every step; reusing freed blocks avoids the page faults
// of fresh large mallocs. Blocks are 64-byte aligned for the SIMD kernels.
class HostPool {
 public:
  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(m_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::runtime_error("out of host memory allocating " + std::to_string(bytes) +
                                     " bytes");
    return p;
  }

  void give(void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(m_);
    if (cached_ + bytes > kMaxCached) {
      std::free(p);
      return;
    }
    free_[bytes].push_back(p);
    cached_ += bytes;
  }

  // Sizes are rounded so that nearby requests share blocks.
  static size_t roundUp(size_t bytes) {
    if (bytes <= 4096) return std::max<size_t>(64, (bytes + 63) / 64 * 64);
    size_t step = 4096;
    while (step * 16 < bytes) step *= 2;  // at most ~1/16 wasted
    return (bytes + step - 1) / step * step;
  }

 private:
  static constexpr size_t kMaxCached = size_t(2) << 30;
  std::mutex m_;
  std::map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

HostPool& hostPool() {
  static HostPool* pool = new HostPool();  // outlives static teardown; freed blocks may arrive late
  return *pool;
}

// ---- streams and events -----------------------------------------------------------------

class CpuStream;
class CpuEvent;
struct Capture;

// Thrown for host waits and cross-capture waits that a CUDA graph capture forbids too.
[[noreturn]] void captureMisuse(const std::string& what) { throw std::runtime_error(what); }

// Marks events whose latest record was captured into a graph that is now complete: like CUDA,
// such a record cannot be waited for outside its capture.
Capture* endedCapture() {
  static char sentinel;
  return reinterpret_cast<Capture*>(&sentinel);
}

// The live streams, for cancelQueued on the whole device.
struct StreamList {
  std::mutex m;  // held while a stream joins or leaves, and while the list is walked
  std::vector<CpuStream*> streams;
};

StreamList& liveStreams() {
  static StreamList* list = new StreamList();  // outlives static teardown, like the streams
  return *list;
}

class CpuStream : public Stream, public std::enable_shared_from_this<CpuStream> {
 public:
  CpuStream() : worker_([this] { loop(); }) {
    std::lock_guard<std::mutex> lock(liveStreams().m);
    liveStreams().streams.push_back(this);
  }

  ~CpuStream() override {
    {
      std::lock_guard<std::mutex> lock(liveStreams().m);
      auto& v = liveStreams().streams;
      v.erase(std::remove(v.begin(), v.end(), this), v.end());
    }
    {
      std::lock_guard<std::mutex> lock(m_);
      stopping_ = true;
    }
    cv_.notify_all();
    worker_.join();  // drains the queue first
  }

  Device device() const override { return kCpu; }
  bool capturing() const override { return capture_ != nullptr; }

  // Runs `task` (an op) after the work enqueued so far, or records it while capturing.
  void enqueue(std::function<void()> task);

  // Queues `task` as control work (an event record or wait, a host callback): never
  // cancelled, since other streams and Promises wait for it.
  void enqueueControl(std::function<void()> task) { run(std::move(task), false); }

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
    std::function<void()> body;
    bool cancellable;      // an op (not control work)
    std::thread::id owner;  // the thread that enqueued it: cancelQueued drops only its own
  };

  void run(std::function<void()> task, bool cancellable) {
    {
      std::lock_guard<std::mutex> lock(m_);
      queue_.push_back(Task{std::move(task), cancellable, std::this_thread::get_id()});
    }
    cv_.notify_one();
  }

  void loop() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = std::move(queue_.front().body);
        queue_.pop_front();
      }
      try {
        task();
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(m_);
        if (error_.empty()) error_ = e.what();
      }
    }
  }

  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Task> queue_;
  std::string error_;
  bool stopping_ = false;
  std::thread worker_;  // last: starts after the members it uses exist
};

// Records are numbered; a record completes when its stream reaches it. Waiting for an event
// means waiting for the record that was latest when the wait was enqueued.
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
      std::lock_guard<std::mutex> lock(state_->m);
      ticket = ++state_->recorded;
    }
    stream.enqueueControl([state = state_, ticket] {
      std::vector<std::function<void()>> ready;
      {
        std::lock_guard<std::mutex> lock(state->m);
        state->completed = std::max(state->completed, ticket);
        auto& w = state->waiters;
        for (auto it = w.begin(); it != w.end();) {
          if (it->first <= state->completed) {
            ready.push_back(std::move(it->second));
            it = w.erase(it);
          } else {
            ++it;
          }
        }
      }
      state->cv.notify_all();
      for (auto& f : ready) f();
    });
  }

  void whenDone(std::function<void()> done) override {
    if (capturedIn) captureMisuse(capturedRecordMessage("synchronize"));
    {
      std::lock_guard<std::mutex> lock(state_->m);
      if (state_->completed < state_->recorded) {
        state_->waiters.emplace_back(state_->recorded, std::move(done));
        return;
      }
    }
    done();
  }

  static std::string capturedRecordMessage(const char* what) {
    return std::string(what) + ": the event's latest record was captured into a graph; record "
                                "it outside the capture first";
  }

  // Returns a task that blocks its stream until the current latest record has completed.
  std::function<void()> waitTask() {
    uint64_t target;
    {
      std::lock_guard<std::mutex> lock(state_->m);
      target = state_->recorded;
    }
    return [state = state_, target] {
      std::unique_lock<std::mutex> lock(state->m);
      state->cv.wait(lock, [&] { return state->completed >= target; });
    };
  }

 private:
  struct State {
    std::mutex m;
    std::condition_variable cv;
    uint64_t recorded = 0, completed = 0;
    std::vector<std::pair<uint64_t, std::function<void()>>> waiters;
  };
  // Shared with queued tasks, which may run after the event object is gone.
  std::shared_ptr<State> state_ = std::make_shared<State>();
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

void CpuStream::enqueue(std::function<void()> task) {
  if (capture_)
    capture_->items.push_back({Capture::Item::Task, shared_from_this(), nullptr, std::move(task)});
  else
    run(std::move(task), true);
}

void CpuEvent::record(Stream& s) {
  auto& stream = static_cast<CpuStream&>(s);
  if (Capture* c = stream.capture_) {
    if (capturedIn != c) c->events.push_back(shared_from_this());
    capturedIn = c;
    c->items.push_back({Capture::Item::Record, stream.shared_from_this(), shared_from_this(), {}});
    return;
  }
  capturedIn = nullptr;
  recordNow(stream);
}

void CpuStream::wait(Event& e) {
  auto& event = static_cast<CpuEvent&>(e);
  if (event.capturedIn == endedCapture()) captureMisuse(CpuEvent::capturedRecordMessage("wait"));
  if (Capture* c = event.capturedIn) {
    if (capture_ && capture_ != c) captureMisuse("wait: the event belongs to another capture");
    if (!capture_) {  // the stream joins the capture
      capture_ = c;
      c->streams.push_back(shared_from_this());
    }
    c->items.push_back({Capture::Item::Wait, shared_from_this(), event.shared_from_this(), {}});
    return;
  }
  if (capture_)
    captureMisuse("wait: a capturing stream can only wait for events recorded during the "
                  "same capture");
  enqueueControl(event.waitTask());
}

// Replays a capture's items through the ordinary stream and event calls, in their recorded
// order: each wait then binds to the same record as during the capture.
class CpuGraph : public Graph {
 public:
  explicit CpuGraph(Capture&& c)
      : streams_(std::move(c.streams)), items_(std::move(c.items)) {
    start_ = std::make_shared<CpuEvent>();
    end_ = std::make_shared<CpuEvent>();
  }

  void launch(Stream& s) override {
    auto& stream = static_cast<CpuStream&>(s);
    start_->record(stream);
    for (auto& joined : streams_) joined->wait(*start_);
    for (auto& item : items_) {
      switch (item.kind) {
        case Capture::Item::Task: item.stream->enqueue(item.task); break;
        case Capture::Item::Record: item.event->record(*item.stream); break;
        case Capture::Item::Wait: item.stream->wait(*item.event); break;
      }
    }
    end_->record(*streams_.front());  // every joined stream was waited for by the origin
    stream.wait(*end_);
  }

 private:
  std::vector<std::shared_ptr<CpuStream>> streams_;
  std::vector<Capture::Item> items_;
  std::shared_ptr<CpuEvent> start_, end_;
};

// ---- the backend ------------------------------------------------------------------------

// Physical memory, or less where a cgroup (a container) limits this process's memory.
// SYNTHGRAD_CPU_MEMORY=<bytes> sets it (a limit the process cannot see, or tests).
size_t hostMemoryBytes() {
  if (const char* forced = std::getenv("SYNTHGRAD_CPU_MEMORY")) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(forced, &end, 10);
    if (end != forced && *end == '\0' && v > 0) return static_cast<size_t>(v);
  }
  const long pages = sysconf(_SC_PHYS_PAGES), pageSize = sysconf(_SC_PAGE_SIZE);
  size_t bytes = pages > 0 && pageSize > 0 ? size_t(pages) * size_t(pageSize) : SIZE_MAX;
  // cgroup v2, then v1 ("max" or a huge number when unlimited).
  for (const char* file : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    if (FILE* f = std::fopen(file, "r")) {
      unsigned long long limit = 0;
      if (std::fscanf(f, "%llu", &limit) == 1 && limit > 0 && limit < bytes) bytes = size_t(limit);
      std::fclose(f);
    }
  }
  return bytes;
}

CpuStream& cpu(Stream& s) { return static_cast<CpuStream&>(s); }

class CpuBackend : public Backend {
 public:
  Device device() const override { return kCpu; }
  std::string deviceName() const override { return "cpu"; }

  std::shared_ptr<Storage> allocate(size_t bytes) override {
    size_t rounded = HostPool::roundUp(std::max<size_t>(bytes, 1));
    void* p = hostPool().take(rounded);
    return std::make_shared<Storage>(kCpu, p, bytes,
                                     [rounded](void* q, size_t) { hostPool().give(q, rounded); });
  }

  size_t memoryBytes() const override {
    static const size_t bytes = hostMemoryBytes();
    return bytes;
  }

  std::shared_ptr<Stream> createStream() override { return std::make_shared<CpuStream>(); }
  std::shared_ptr<Event> createEvent() override { return std::make_shared<CpuEvent>(); }
  Stream& defaultStream() override {
    // Lives as long as the process (a shared_ptr so that graphs can hold it like any stream).
    static auto* stream = new std::shared_ptr<CpuStream>(std::make_shared<CpuStream>());
    return **stream;
  }

  void beginCapture(Stream& s) override {
    auto& origin = cpu(s);
    if (capture_) captureMisuse("beginCapture: another capture is in progress on the cpu device");
    if (origin.capture_) captureMisuse("beginCapture: the stream is already being captured");
    capture_ = std::make_unique<Capture>();
    capture_->origin = &origin;
    capture_->streams.push_back(origin.shared_from_this());
    origin.capture_ = capture_.get();
  }

  std::unique_ptr<Graph> endCapture(Stream& s) override {
    if (!capture_ || capture_->origin != &s)
      captureMisuse("endCapture: no capture was begun on this stream");
    std::unique_ptr<Capture> c = std::move(capture_);
    for (auto& joined : c->streams) joined->capture_ = nullptr;
    for (auto& event : c->events)
      if (event->capturedIn == c.get()) event->capturedIn = endedCapture();
    checkJoined(*c);
    return std::make_unique<CpuGraph>(std::move(*c));
  }

  void upload(const Tensor& dst, const void* host) override {
    std::memcpy(dst.storage->data(), host, dst.bytes());
  }
  void zero(const Tensor& dst) override { std::memset(dst.storage->data(), 0, dst.bytes()); }

  size_t cancelQueued() override {
    std::lock_guard<std::mutex> lock(liveStreams().m);  // no stream leaves meanwhile
    size_t dropped = 0;
    for (CpuStream* s : liveStreams().streams) dropped += s->cancelQueued();
    return dropped;
  }
  void download(Stream& s, const Tensor& src, void* host, std::shared_ptr<void> hostOwner) override {
    if (s.capturing())
      captureMisuse("read: the stream is being captured into a graph; read after endCapture() "
                    "and launch()");
    cpu(s).enqueue([src, host, hostOwner = std::move(hostOwner)] {
      std::memcpy(host, src.storage->data(), src.bytes());
    });
  }
  void copy(Stream& s, const Tensor& src, const Tensor& dst) override {
    cpu(s).enqueue([src, dst] { std::memcpy(dst.storage->data(), src.storage->data(), src.bytes()); });
  }

  void fill(Stream& s, const Tensor& y, double value) override {
    cpu(s).enqueue([y, value] {
      if (y.dtype == DType::Int32)
        cpu::fillInt(y.i32(), y.numel(), static_cast<int32_t>(value));
      else
        cpu::fill(y.f32(), y.numel(), static_cast<float>(value));
    });
  }
  void axpby(Stream& s, float a, const Tensor& x, float b, const Tensor& y) override {
    cpu(s).enqueue([=] { cpu::axpby(x.numel(), a, x.f32(), b, y.f32()); });
  }
  void gemm(Stream& s, const Tensor& a, const Tensor& b, const Tensor& c, bool transA,
            bool transB, float alpha, float beta) override {
    cpu(s).enqueue([=] {
      int64_t M = c.shape[0], N = c.shape[1], K = transA ? a.shape[0] : a.shape[1];
      cpu::sgemm(transA, transB, M, N, K, alpha, a.f32(), a.shape[1], b.f32(), b.shape[1], beta,
                 c.f32(), N);
    });
  }
  void linearForward(Stream& s, const Tensor& x, const Tensor& w, const Tensor& bias,
                     const Tensor& y, std::optional<Activation> act) override {
    cpu(s).enqueue([=] {
      const int64_t B = x.shape[0], in = x.shape[1], out = w.shape[0];
      cpu::sgemm(false, true, B, out, in, 1.0f, x.f32(), in, w.f32(), in, 0.0f, y.f32(), out);
      if (bias.storage) cpu::addBias(y.f32(), bias.f32(), B, out);
      if (act) cpu::activationForward(*act, y.f32(), y.f32(), B * out);
    });
  }
  void addBias(Stream& s, const Tensor& y, const Tensor& bias) override {
    cpu(s).enqueue([=] { cpu::addBias(y.f32(), bias.f32(), y.shape[0], y.shape[1]); });
  }
  void biasBackward(Stream& s, const Tensor& dy, const Tensor& dbias) override {
    cpu(s).enqueue([=] { cpu::biasBackward(dy.f32(), dbias.f32(), dy.shape[0], dy.shape[1]); });
  }
  void activationForward(Stream& s, Activation act, const Tensor& x, const Tensor& y) override {
    cpu(s).enqueue([=] { cpu::activationForward(act, x.f32(), y.f32(), x.numel()); });
  }
  void activationBackward(Stream& s, Activation act, const Tensor& y, const Tensor& dy,
                          const Tensor& dx) override {
    cpu(s).enqueue([=] { cpu::activationBackward(act, y.f32(), dy.f32(), dx.f32(), y.numel()); });
  }
  void batchNormForward(Stream& s, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                        const Tensor& y, const Tensor& runningMean, const Tensor& runningVar,
                        const Tensor& saveMean, const Tensor& saveInvStd, float momentum,
                        float eps, bool training) override {
    cpu(s).enqueue([=] {
      cpu::batchNormForward(x.f32(), gamma.f32(), beta.f32(), y.f32(), runningMean.f32(),
                            runningVar.f32(), saveMean.f32(), saveInvStd.f32(), x.shape[0],
                            x.shape[1], momentum, eps, training);
    });
  }
  void batchNormBackward(Stream& s, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                         const Tensor& saveMean, const Tensor& saveInvStd, const Tensor& dx,
                         const Tensor& dgamma, const Tensor& dbeta) override {
    cpu(s).enqueue([=] {
      cpu::batchNormBackward(x.f32(), dy.f32(), gamma.f32(), saveMean.f32(), saveInvStd.f32(),
                             dx.f32(), dgamma.f32(), dbeta.f32(), x.shape[0], x.shape[1]);
    });
  }
  void softmaxCrossEntropyForward(Stream& s, const Tensor& logits, const Tensor& labels,
                                  const Tensor& probs, const Tensor& loss) override {
    cpu(s).enqueue([=] {
      if (!cpu::softmaxCrossEntropyForward(logits.f32(), labels.i32(), probs.f32(), loss.f32(),
                                           logits.shape[0], logits.shape[1]))
        throw std::runtime_error(labelError("softmaxCrossEntropyForward", logits.shape[1]));
    });
  }
  void softmaxCrossEntropyBackward(Stream& s, const Tensor& probs, const Tensor& labels,
                                   const Tensor& dlogits, float scale) override {
    cpu(s).enqueue([=] {
      cpu::softmaxCrossEntropyBackward(probs.f32(), labels.i32(), dlogits.f32(), probs.shape[0],
                                       probs.shape[1], scale);
    });
  }
  void mseForward(Stream& s, const Tensor& pred, const Tensor& target,
                  const Tensor& loss) override {
    cpu(s).enqueue([=] { cpu::mseForward(pred.f32(), target.f32(), loss.f32(), pred.numel()); });
  }
  void mseBackward(Stream& s, const Tensor& pred, const Tensor& target, const Tensor& dpred,
                   float scale) override {
    cpu(s).enqueue(
        [=] { cpu::mseBackward(pred.f32(), target.f32(), dpred.f32(), pred.numel(), scale); });
  }
  void oneHot(Stream& s, const Tensor& labels, const Tensor& out) override {
    cpu(s).enqueue([=] {
      if (!cpu::oneHot(labels.i32(), out.f32(), out.shape[0], out.shape[1]))
        throw std::runtime_error(labelError("oneHot", out.shape[1]));
    });
  }
  void concatColumns(Stream& s, const Tensor& a, const Tensor& b, const Tensor& out) override {
    cpu(s).enqueue([=] {
      cpu::concatColumns(a.f32(), b.f32(), out.f32(), a.shape[0], a.shape[1], b.shape[1]);
    });
  }
  void splitColumns(Stream& s, const Tensor& dout, const Tensor& da, const Tensor& db) override {
    cpu(s).enqueue([=] {
      int64_t colsA = da.storage ? da.shape[1] : dout.shape[1] - db.shape[1];
      cpu::splitColumns(dout.f32(), da.storage ? da.f32() : nullptr,
                        db.storage ? db.f32() : nullptr, dout.shape[0], colsA,
                        dout.shape[1] - colsA);
    });
  }
  void writeScalars(Stream& s, const Tensor& y, const std::vector<float>& values) override {
    cpu(s).enqueue([y, values] { std::copy(values.begin(), values.end(), y.f32()); });
  }
  // The hyperparameters are read when the task runs, not when it is enqueued: a replayed
  // graph then uses the values written before each launch.
  void sgdStepGroup(Stream& s, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                    const std::vector<Tensor>& velocities, const Tensor& hyper, float momentum,
                    float weightDecay) override {
    cpu(s).enqueue([=] {
      const float lr = hyper.f32()[0];
      for (size_t i = 0; i < params.size(); ++i) {
        const int64_t n = params[i].numel();
        cpu::sgdStep(params[i].f32(), grads[i].f32(),
                     velocities.empty() ? nullptr : velocities[i].f32(), n, lr, momentum,
                     weightDecay);
        cpu::fill(grads[i].f32(), n, 0.0f);
      }
    });
  }
  void adamStepGroup(Stream& s, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                     const std::vector<Tensor>& ms, const std::vector<Tensor>& vs,
                     const Tensor& hyper, float beta1, float beta2, float eps,
                     float weightDecay) override {
    cpu(s).enqueue([=] {
      const cpu::AdamScalars scalars{hyper.f32()[0], hyper.f32()[1]};
      for (size_t i = 0; i < params.size(); ++i) {
        const int64_t n = params[i].numel();
        cpu::adamStepScaled(params[i].f32(), grads[i].f32(), ms[i].f32(), vs[i].f32(), n, scalars,
                            beta1, beta2, eps, weightDecay);
        cpu::fill(grads[i].f32(), n, 0.0f);
      }
    });
  }

 private:
  // CUDA's rule: a stream that joined a capture must rejoin its origin before the end, i.e.
  // its last recorded item is an event record that the origin waits for afterwards.
  static void checkJoined(const Capture& c) {
    for (size_t j = 1; j < c.streams.size(); ++j) {
      const CpuStream* joined = c.streams[j].get();
      ptrdiff_t last = -1;
      for (size_t i = 0; i < c.items.size(); ++i)
        if (c.items[i].stream.get() == joined) last = static_cast<ptrdiff_t>(i);
      bool rejoined = false;
      if (last >= 0 && c.items[last].kind == Capture::Item::Record) {
        for (size_t i = last + 1; i < c.items.size() && !rejoined; ++i)
          rejoined = c.items[i].kind == Capture::Item::Wait && c.items[i].stream.get() == c.origin &&
                     c.items[i].event == c.items[last].event;
      }
      if (!rejoined)
        captureMisuse("endCapture: a stream joined the capture but its last work was not waited "
                      "for by the capturing stream (record an event on it and wait for that "
                      "event on the capturing stream)");
    }
  }

  std::unique_ptr<Capture> capture_;

  static std::string labelError(const char* op, int64_t classes) {
    return std::string(op) + ": a label is outside [0, " + std::to_string(classes) + ")";
  }
};

}  // namespace

Backend& cpuBackend() {
  static CpuBackend* backend = new CpuBackend();
  return *backend;
}

void registerCpuBackend() {
  static const BackendProvider provider{
      [] { return 1; }, nullptr, [](int) -> Backend& { return cpuBackend(); }, nullptr, nullptr};
  registerBackend(DeviceKind::Cpu, &provider);
}

}  // namespace sg
