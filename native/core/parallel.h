// Intra-op parallelism shared by every CPU stream.
//
// Each CPU stream is one worker thread; when an op on that thread has enough work it splits
// it into chunks with parallelFor, and the idle cores of a process-wide pool help. The caller
// always works on its own chunks too, so two streams running ops at once share the cores and
// never deadlock. Chunks are fixed by (n, grain), not by the thread count, so a reduction
// that combines per-chunk partials in chunk order gives bit-identical results on any machine.
#pragma once
#include <cstdint>
#include <functional>

namespace sg {

// Calls body(begin, end) over [0, n) in chunks of `grain` items (the last may be shorter).
// Chunks may run concurrently on several threads; returns when all are done.
void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

// Number of threads that can run chunks at once (pool workers + the caller).
int parallelism();

// Sets the number of threads for later parallelFor calls (1 = serial). Default: all cores,
// or SYNTHGRAD_NUM_THREADS when set.
void setParallelism(int threads);

}  // namespace sg
