// The CPU backend's streams and events: each stream is a FIFO of tasks that the process-wide
// pool (core/parallel.h) serves one task at a time; events are numbered records that
// complete when their stream reaches them, and a stream waiting for one is parked, not a
// blocked thread (cpu_runtime.h holds the classes; this file their out-of-line parts, and
// the transfers that use them).
#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu_runtime.h"

namespace sg::cpu_backend {

Capture* endedCapture() {
  static char sentinel;
  return reinterpret_cast<Capture*>(&sentinel);
}

StreamList& liveStreams() {
  static StreamList* list = new StreamList();  // outlives static teardown, like the streams
  return *list;
}

void EventRecords::complete(uint64_t ticket) {
  std::vector<std::function<void()>> ready;
  {
    std::lock_guard<std::mutex> lock(m);
    completed = std::max(completed, ticket);
    for (auto it = waiters.begin(); it != waiters.end();) {
      if (it->first <= completed) {
        ready.push_back(std::move(it->second));
        it = waiters.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& f : ready) f();
}

bool EventRecords::waitLater(uint64_t target, std::function<void()> wake) {
  std::lock_guard<std::mutex> lock(m);
  if (completed >= target) return false;
  waiters.emplace_back(target, std::move(wake));
  return true;
}

// Runs the queue's tasks in order until it is empty, a wait parks the stream, or other
// streams wait for a pool thread after this one has run for a time slice (then it goes to
// the back of the pool's queue). The slice keeps a module's consecutive ops on one core, with
// its data in that core's cache, as the OS's time slices did for a thread per stream.
void CpuStream::serve() {
  constexpr auto kSlice = std::chrono::milliseconds(1);
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    Task task;
    {
      std::lock_guard<std::mutex> lock(m_);
      if (queue_.empty()) {
        phase_ = Phase::Idle;
        drained_.notify_all();
        return;  // `this` may be destroyed from here on
      }
      task = std::move(queue_.front());
      queue_.pop_front();
      phase_ = Phase::Running;
      if (task.waitFor) {
        // Under m_, so that wake() (which takes m_) finds the stream parked.
        if (task.waitFor->waitLater(task.target, [this] { wake(); })) {
          phase_ = Phase::Parked;
          return;
        }
        continue;  // the record has completed
      }
    }
    try {
      task.body();
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(m_);
      if (error_.empty()) error_ = e.what();
    }
    task.body = nullptr;  // release what the task holds before the next one runs
    if (clientsWaiting() && std::chrono::steady_clock::now() - start >= kSlice) {
      {
        std::lock_guard<std::mutex> lock(m_);
        if (queue_.empty()) {
          phase_ = Phase::Idle;
          drained_.notify_all();
          return;
        }
        phase_ = Phase::Scheduled;
      }
      schedule(this);
      return;
    }
  }
}

void CpuStream::wake() {
  {
    std::lock_guard<std::mutex> lock(m_);
    phase_ = Phase::Scheduled;
  }
  schedule(this, true);
}

void CpuStream::enqueue(std::function<void()> task) {
  if (capture_)
    capture_->items.push_back({Capture::Item::Task, shared_from_this(), nullptr, std::move(task)});
  else
    push(Task{std::move(task), true, {}, {}, 0});
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
  event.enqueueWaitOn(*this);
}

std::shared_ptr<Stream> CpuBackend::createStream() { return std::make_shared<CpuStream>(); }

std::shared_ptr<Event> CpuBackend::createEvent() { return std::make_shared<CpuEvent>(); }

Stream& CpuBackend::defaultStream() {
  // Lives as long as the process (a shared_ptr so that graphs can hold it like any stream).
  static auto* stream = new std::shared_ptr<CpuStream>(std::make_shared<CpuStream>());
  return **stream;
}

size_t CpuBackend::cancelQueued() {
  std::lock_guard<std::mutex> lock(liveStreams().m);  // no stream leaves meanwhile
  size_t dropped = 0;
  for (CpuStream* s : liveStreams().streams) dropped += s->cancelQueued();
  return dropped;
}

void CpuBackend::download(Stream& s, const Tensor& src, void* host, std::shared_ptr<void> hostOwner) {
  if (s.capturing())
    captureMisuse("read: the stream is being captured into a graph; read after endCapture() "
                  "and launch()");
  cpu(s).enqueue([src, host, hostOwner = std::move(hostOwner)] {
    std::memcpy(host, src.storage->data(), src.bytes());
  });
}

// The bytes are copied into a buffer the task owns: the caller's may change before it runs.
void CpuBackend::uploadAsync(Stream& s, const Tensor& dst, const void* host) {
  if (s.capturing())
    captureMisuse("write: the stream is being captured into a graph; write before "
                  "beginCapture() or after endCapture()");
  const auto* bytes = static_cast<const uint8_t*>(host);
  auto staging = std::make_shared<std::vector<uint8_t>>(bytes, bytes + dst.bytes());
  cpu(s).enqueue([dst, staging = std::move(staging)] {
    std::memcpy(dst.storage->data(), staging->data(), staging->size());
  });
}

}  // namespace sg::cpu_backend
