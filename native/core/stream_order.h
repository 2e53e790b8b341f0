// The stream-order checker: a debug mode that finds a missing cross-stream wait when the work
// is ENQUEUED, in host program order, instead of hoping that a race is lost while testing.
//
// On (SYNTHGRAD_CHECK_STREAMS=1 when the addon loads, or native.checkStreams(true)), every
// access to tensor memory is checked against happens-before, kept as vector clocks:
//   - each stream counts the ops enqueued on it (its clock) and keeps, per other stream, the
//     latest op of that stream it is ordered after (what it has waited for);
//   - Event.record snapshots the recording stream's vector (its own clock included), and
//     Stream.wait(event) merges the event's latest snapshot into the waiting stream's;
//   - the host learns a stream's (or an event's) vector when a synchronize() or read()
//     Promise resolves: work the host enqueues afterwards, on any stream, is ordered after it;
//   - a Storage remembers its last write (stream, clock, op, argument) and the reads made by
//     each stream since; a view (Tensor.view) counts as its whole base allocation.
// An op that reads memory whose last write, on another stream, is not ordered before it, or
// that writes memory that another stream wrote or read without that access being ordered
// before it, throws StreamOrderError naming the op, the argument, and both streams; nothing is
// enqueued then. The check runs in ops.cpp for every op (so on every backend) and in the addon
// for reads, records, waits, synchronizations and graphs.
//
// Memory reuse needs no check: a Storage's memory returns to its allocator only once every op
// that used it has run (CPU: the queued tasks hold the Storage; CUDA: the allocator fences a
// released block on every stream), and a new Storage starts with no history.
// Graphs: captured work is checked inside its capture (with clocks of its own: the captured
// streams' order among themselves), and a launch counts as one op on the launching stream that
// reads and writes everything the graph touched.
// A dead stream's work is treated as complete (both backends synchronise a stream before it is
// destroyed). A synchronize() or read() that rejects (an op of the stream failed) teaches the
// host all the same: the stream's work has run either way.
// Off, the cost is one relaxed atomic load per op and per destructor (order_hooks.h).
#pragma once
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend.h"
#include "order_hooks.h"

namespace sg::order {

// An access the checker refused; the addon turns it into an Error with code
// ERR_SYNTHGRAD_STREAM_ORDER.
class StreamOrderError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// Switches the checker on or off (either way it forgets everything it knew: work enqueued
// before is treated as complete). Returns the previous setting.
bool setChecking(bool on);

// One tensor argument of an op.
struct Access {
  std::shared_ptr<Storage> storage;
  DType dtype;
  Shape shape;
  std::string name;
  bool write;
};

// The accesses of one op about to be enqueued on `s`: checks them (throws StreamOrderError)
// and, when they pass, counts the op and records them. Call only while checking().
void enqueue(const char* op, Stream& s, const std::vector<Access>& accesses);

// After a successful Event::record / Stream::wait.
void recorded(Event& e, Stream& s);
void waited(Stream& s, Event& e);

// What the host will know once a synchronize() of `s` (or of `e`) resolves: taken when the
// call is made, handed to hostLearns() on the host thread when its Promise resolves.
struct Knowledge;
std::shared_ptr<Knowledge> streamKnowledge(Stream& s);
std::shared_ptr<Knowledge> eventKnowledge(Event& e);
void hostLearns(const Knowledge& k);

// Graphs: after a successful Backend::beginCapture; after endCapture (graph: the result, or
// null when the capture was refused or discarded); before Graph::launch.
void captureBegun(Stream& origin);
void captureEnded(Stream& origin, const Graph* graph);
void launching(const Graph& graph, Stream& s);

}  // namespace sg::order
