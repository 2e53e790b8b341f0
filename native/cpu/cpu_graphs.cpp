// The CPU backend's graphs: between beginCapture and endCapture the origin stream, and every
// stream that waits for an event recorded during the capture, record their tasks, event
// records and waits into one list (Capture, cpu_runtime.h) instead of running them; a
// CpuGraph replays that list through the ordinary stream and event calls, so each wait binds
// to the same record as during the capture. The capture rules are CUDA's (checkJoined).
#include "cpu_runtime.h"

namespace sg::cpu_backend {
namespace {

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

}  // namespace

void CpuBackend::beginCapture(Stream& s) {
  auto& origin = cpu(s);
  if (capture_) captureMisuse("beginCapture: another capture is in progress on the cpu device");
  if (origin.capture_) captureMisuse("beginCapture: the stream is already being captured");
  capture_ = std::make_unique<Capture>();
  capture_->origin = &origin;
  capture_->streams.push_back(origin.shared_from_this());
  origin.capture_ = capture_.get();
}

std::unique_ptr<Graph> CpuBackend::endCapture(Stream& s) {
  if (!capture_ || capture_->origin != &s)
    captureMisuse("endCapture: no capture was begun on this stream");
  std::unique_ptr<Capture> c = std::move(capture_);
  for (auto& joined : c->streams) joined->capture_ = nullptr;
  for (auto& event : c->events)
    if (event->capturedIn == c.get()) event->capturedIn = endedCapture();
  checkJoined(*c);
  return std::make_unique<CpuGraph>(std::move(*c));
}

// CUDA's rule: a stream that joined a capture must rejoin its origin before the end, i.e.
// its last recorded item is an event record that the origin waits for afterwards.
void CpuBackend::checkJoined(const Capture& c) {
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

}  // namespace sg::cpu_backend
