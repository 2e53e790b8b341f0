// The stream-order checker; see stream_order.h. Everything here runs under one mutex: the
// checker is a debug mode, and its state changes on every op it sees.
#include "stream_order.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace sg::order {

// Per stream id, the latest clock ordered before (0: nothing).
using Clocks = std::unordered_map<uint64_t, uint64_t>;

struct Knowledge {
  uint64_t generation;
  Clocks clocks;
};

namespace {

uint64_t at(const Clocks& c, uint64_t id) {
  auto it = c.find(id);
  return it == c.end() ? 0 : it->second;
}

void merge(Clocks& into, const Clocks& from) {
  for (const auto& [id, clock] : from)
    if (at(into, id) < clock) into[id] = clock;
}

struct StreamState {
  uint64_t id = 0;
  uint64_t clock = 0;  // ops counted so far
  Clocks seen;         // of the other streams: what this stream's next op is ordered after
  Clocks snapshot() const {
    Clocks c = seen;
    c[id] = clock;
    return c;
  }
};

// One access of an earlier op.
struct Use {
  uint64_t stream = 0, clock = 0;
  const char* op = "";
  std::string name;
};

struct BufferState {
  bool written = false;
  Use write;
  std::unordered_map<uint64_t, Use> reads;  // per stream, its latest read since the write
};

// The order of one world: the real streams, or the work of one open capture.
struct Domain {
  std::unordered_map<const Stream*, StreamState> streams;
  std::unordered_map<const Storage*, BufferState> buffers;
};

// What a graph touched, for its launches.
struct Touch {
  std::weak_ptr<Storage> storage;
  bool write = false;
  DType dtype = DType::Float32;
  Shape shape;
  std::string name;  // "x of linearForward"
};

struct Capture {
  uint64_t serial = 0;
  Domain domain;
  std::unordered_map<const Storage*, Touch> touched;
};

struct EventState {
  Clocks snapshot;
  uint64_t capture = 0;  // the serial of the capture that recorded it (0: a real record)
};

struct State {
  std::mutex m;
  uint64_t generation = 1;
  uint64_t nextStream = 1, nextCapture = 1;
  std::unordered_map<const Stream*, uint64_t> ids;
  std::unordered_map<uint64_t, std::string> names;
  Domain real;
  std::map<int, Capture> captures;  // by device: one capture at a time per backend
  std::unordered_map<const Event*, EventState> events;
  std::unordered_map<const Graph*, std::vector<Touch>> graphs;
  Clocks dead;                            // destroyed streams: their last clocks (all complete)
  std::map<std::thread::id, Clocks> host;  // per JavaScript thread: what its awaits taught it

  void reset() {
    ++generation;
    ids.clear();
    real = Domain();
    captures.clear();
    events.clear();
    graphs.clear();
    dead.clear();
    host.clear();
  }
};

State& state() {
  static State* s = new State();  // never destroyed: Storages may be released at exit
  return *s;
}

int deviceKey(Device d) { return (d.kind == DeviceKind::Cpu ? 0 : 1) * 4096 + d.index; }

uint64_t idOf(State& st, const Stream& s) {
  auto it = st.ids.find(&s);
  if (it != st.ids.end()) return it->second;
  const uint64_t id = st.nextStream++;
  st.ids[&s] = id;
  bool isDefault = false;
  try {
    isDefault = &backendFor(s.device()).defaultStream() == &s;
  } catch (...) {
  }
  st.names[id] = isDefault ? "the default stream (" + s.device().name() + ")"
                           : "stream #" + std::to_string(id) + " (" + s.device().name() + ")";
  return id;
}

StreamState& streamIn(State& st, Domain& d, const Stream& s) {
  StreamState& ss = d.streams[&s];
  if (ss.id == 0) ss.id = idOf(st, s);
  return ss;
}

// The capture that `s` records into, or null (begun before the checker was on).
Capture* captureOf(State& st, const Stream& s) {
  auto it = st.captures.find(deviceKey(s.device()));
  return it == st.captures.end() ? nullptr : &it->second;
}

std::string describe(DType dtype, const Shape& shape) {
  return std::string(dtypeName(dtype)) + " " + shapeString(shape);
}

void goneHook(Gone kind, const void* object) {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.m);
  switch (kind) {
    case Gone::Storage: {
      auto* p = static_cast<const Storage*>(object);
      st.real.buffers.erase(p);
      for (auto& [key, c] : st.captures) {
        c.domain.buffers.erase(p);
        c.touched.erase(p);
      }
      break;
    }
    case Gone::Stream: {
      auto* p = static_cast<const Stream*>(object);
      auto it = st.ids.find(p);
      if (it == st.ids.end()) break;
      auto s = st.real.streams.find(p);
      // Both backends synchronise a stream before destroying it: all its work is complete.
      if (s != st.real.streams.end()) st.dead[it->second] = s->second.clock;
      st.real.streams.erase(p);
      for (auto& [key, c] : st.captures) c.domain.streams.erase(p);
      st.ids.erase(it);
      break;
    }
    case Gone::Event:
      st.events.erase(static_cast<const Event*>(object));
      break;
    case Gone::Graph:
      st.graphs.erase(static_cast<const Graph*>(object));
      break;
  }
}

// Whether `use` (an access on another stream) is ordered before the next op of `s`.
bool ordered(const State& st, const StreamState& s, const Use& use, const Clocks* host) {
  if (use.stream == s.id || at(s.seen, use.stream) >= use.clock) return true;
  if (host && at(*host, use.stream) >= use.clock) return true;
  return at(st.dead, use.stream) >= use.clock;
}

const bool kFromEnvironment = [] {
  const char* v = std::getenv("SYNTHGRAD_CHECK_STREAMS");
  if (v && *v && std::strcmp(v, "0") != 0) setChecking(true);
  return true;
}();

}  // namespace

bool setChecking(bool on) {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.m);
  const bool was = gChecking.load();
  if (on) gGoneHook.store(&goneHook, std::memory_order_release);
  gChecking.store(on);
  st.reset();
  return was;
}

void enqueue(const char* op, Stream& s, const std::vector<Access>& accesses) {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.m);
  const bool capturing = s.capturing();
  Capture* capture = nullptr;
  if (capturing && !(capture = captureOf(st, s))) return;  // a capture the checker did not see begin
  Domain& d = capturing ? capture->domain : st.real;
  StreamState& self = streamIn(st, d, s);
  const Clocks* host = nullptr;
  if (!capturing) {
    auto h = st.host.find(std::this_thread::get_id());
    if (h != st.host.end()) host = &h->second;
  }
  // One entry per Storage: an op that reads and writes the same memory (in place) writes it.
  std::vector<const Access*> merged;
  for (const Access& a : accesses) {
    bool dup = false;
    for (const Access*& m : merged)
      if (m->storage->root() == a.storage->root()) {
        dup = true;
        if (a.write && !m->write) m = &a;
      }
    if (!dup) merged.push_back(&a);
  }
  const std::string where = capturing ? "stream order (while capturing a graph): " : "stream order: ";
  const std::string& me = st.names[self.id];
  for (const Access* a : merged) {
    auto it = d.buffers.find(a->storage->root());
    if (it == d.buffers.end()) continue;
    const BufferState& b = it->second;
    const std::string what = "'" + a->name + "' (" + describe(a->dtype, a->shape) + ")";
    if (b.written && !ordered(st, self, b.write, host)) {
      const std::string& other = st.names[b.write.stream];
      throw StreamOrderError(where + op + " on " + me + (a->write ? " writes " : " reads ") + what +
                             ", last written by " + b.write.op + " ('" + b.write.name + "') on " +
                             other + ", and nothing orders that write before this " +
                             (a->write ? "one" : "read") + ": record an Event on " + other +
                             " after the write and make " + me + " wait for it");
    }
    if (a->write)
      for (const auto& [id, r] : b.reads)
        if (!ordered(st, self, r, host)) {
          const std::string& other = st.names[id];
          throw StreamOrderError(where + op + " on " + me + " writes " + what + " while " + r.op +
                                 " ('" + r.name + "') on " + other +
                                 " may still be reading it (nothing orders that read before "
                                 "this write): record an Event on " + other +
                                 " after the read and make " + me + " wait for it");
        }
  }
  const uint64_t clock = ++self.clock;
  for (const Access* a : merged) {
    BufferState& b = d.buffers[a->storage->root()];
    Use use{self.id, clock, op, a->name};
    if (a->write) {
      b.written = true;
      b.write = std::move(use);
      b.reads.clear();
    } else {
      b.reads[self.id] = std::move(use);
    }
    if (capture) {
      Touch& t = capture->touched[a->storage->root()];
      if (t.storage.expired()) {
        t.storage = a->storage->base() ? a->storage->base() : a->storage;
        t.dtype = a->dtype;
        t.shape = a->shape;
        t.name = a->name + " of " + op;
      }
      t.write = t.write || a->write;
    }
  }
}

void recorded(Event& e, Stream& s) {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.m);
  if (s.capturing()) {
    Capture* c = captureOf(st, s);
    if (!c) {
      st.events.erase(&e);
      return;
    }
    st.events[&e] = EventState{streamIn(st, c->domain, s).snapshot(), c->serial};
    return;
  }
  st.events[&e] = EventState{streamIn(st, st.real, s).snapshot(), 0};
}

void waited(Stream& s, Event& e) {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.m);
  auto it = st.events.find(&e);
  if (it == st.events.end()) return;  // never recorded (while checking): nothing to wait for
  const EventState& ev = it->second;
  if (s.capturing()) {
    Capture* c = captureOf(st, s);
    if (c && ev.capture == c->serial) merge(streamIn(st, c->domain, s).seen, ev.snapshot);
    return;
  }
  if (ev.capture == 0) merge(streamIn(st, st.real, s).seen, ev.snapshot);
}

std::shared_ptr<Knowledge> streamKnowledge(Stream& s) {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.m);
  if (s.capturing()) return nullptr;
  return std::make_shared<Knowledge>(Knowledge{st.generation, streamIn(st, st.real, s).snapshot()});
}

std::shared_ptr<Knowledge> eventKnowledge(Event& e) {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.m);
  auto it = st.events.find(&e);
  if (it == st.events.end() || it->second.capture != 0) return nullptr;
  return std::make_shared<Knowledge>(Knowledge{st.generation, it->second.snapshot});
}

void hostLearns(const Knowledge& k) {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.m);
  if (k.generation != st.generation) return;  // taught before the checker was reset
  merge(st.host[std::this_thread::get_id()], k.clocks);
}

void captureBegun(Stream& origin) {
  State& st = state();
  std::lock_guard<std::mutex> lock(st.m);
  Capture& c = st.captures[deviceKey(origin.device())];
  c = Capture();
  c.serial = st.nextCapture++;
}

void captureEnded(Stream& origin, const Graph* graph) {
  State& st = state();
  std::vector<Touch> touched;  // destroyed after the lock: they hold no Storage, only weak refs
  std::lock_guard<std::mutex> lock(st.m);
  auto it = st.captures.find(deviceKey(origin.device()));
  if (it == st.captures.end()) return;
  if (graph) {
    for (auto& [p, t] : it->second.touched) touched.push_back(std::move(t));
    st.graphs[graph] = std::move(touched);
  }
  st.captures.erase(it);
}

void launching(const Graph& graph, Stream& s) {
  std::vector<Access> accesses;  // holds the Storages until the check is done
  {
    State& st = state();
    std::lock_guard<std::mutex> lock(st.m);
    auto it = st.graphs.find(&graph);
    if (it == st.graphs.end()) return;  // captured before the checker was on
    for (const Touch& t : it->second) {
      // The graph holds what it uses, so this fails only for memory it no longer needs.
      if (auto storage = t.storage.lock())
        accesses.push_back(Access{std::move(storage), t.dtype, t.shape, t.name, t.write});
    }
  }
  enqueue("launch (a graph's work)", s, accesses);
}

}  // namespace sg::order
