// The process-wide CPU thread pool: it serves the CPU streams' queues and the chunks of
// parallelFor, with one set of threads in all.
//
// The pool has parallelism() threads (all cores, or SYNTHGRAD_NUM_THREADS). A CPU stream is
// an ordered queue, not a thread: when it has work it is scheduled (schedule()), and a pool
// thread serves it, one task at a time, so at most parallelism() tasks of all streams run at
// once and the machine is never oversubscribed however many streams there are. When an op
// has enough work it splits it into chunks with parallelFor: the calling thread works on its
// own chunks and idle pool threads help (a waiting stream is served before chunk help). The
// caller always works too and chunks never block on anything but running chunks, so two
// streams running ops at once share the cores and never deadlock; nested calls run inline.
// Chunks are fixed by (n, grain), not by the thread count, so a reduction that combines
// per-chunk partials in chunk order gives bit-identical results on any machine.
#pragma once
#include <cstdint>
#include <functional>

namespace sg {

// Calls body(begin, end) over [0, n) in chunks of `grain` items (the last may be shorter).
// Chunks may run concurrently on several threads; returns when all are done.
void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

// Number of threads that can run work at once (the pool's active threads).
int parallelism();

// Sets the number of threads for later work (1 = serial). Default: all cores, or
// SYNTHGRAD_NUM_THREADS when set. Threads are never destroyed: fewer then stay idle.
void setParallelism(int threads);

// Something the pool serves: a CPU stream. serve() must not block on other pool work (it
// may call parallelFor); it runs some of the client's work and returns.
class PoolClient {
 public:
  virtual void serve() = 0;

 protected:
  ~PoolClient() = default;
};

// Calls client->serve() once on a pool thread, after the clients scheduled before it, or
// before them when `first` (a stream released by an event: likely on the critical path, as a
// thread woken from a wait is favoured by the OS scheduler). The client must stay alive until
// then (a client schedules itself only when it has queued work, at most once at a time).
void schedule(PoolClient* client, bool first = false);

// Whether scheduled clients are waiting for a pool thread: a client that still has work
// then reschedules itself after a time slice instead of keeping its thread, so that every
// stream progresses.
bool clientsWaiting();

}  // namespace sg
