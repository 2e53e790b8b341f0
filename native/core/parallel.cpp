// The process-wide pool for parallelFor and the CPU streams; see parallel.h for the contract.
#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace sg {
namespace {

// Set while this thread runs parallelFor chunks: a nested call then runs inline.
thread_local bool insideChunk = false;

// One parallelFor call: chunks are claimed with an atomic counter by the caller and helpers.
struct Job {
  const std::function<void(int64_t, int64_t)>* body;
  int64_t n, grain, chunks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  int helpersWanted = 0;  // guarded by the pool's mutex
  std::mutex m;
  std::condition_variable finished;

  // Runs chunks until none is left. A helper that comes after the last chunk was claimed
  // returns at once without touching `body` (the caller's, which may be gone by then).
  void work() {
    const bool outer = insideChunk;
    insideChunk = true;
    for (int64_t c; (c = next.fetch_add(1)) < chunks;) {
      int64_t begin = c * grain, end = std::min(n, begin + grain);
      (*body)(begin, end);
      if (done.fetch_add(1) + 1 == chunks) {
        std::lock_guard<std::mutex> lock(m);
        finished.notify_all();
      }
    }
    insideChunk = outer;
  }
};

class Pool {
 public:
  static Pool& instance() {
    static Pool* pool = new Pool();  // never destroyed: workers may outlive static teardown
    return *pool;
  }

  int threads() const { return threads_.load(); }

  void setThreads(int t) {
    t = std::max(1, t);
    {
      std::lock_guard<std::mutex> lock(m_);
      while (static_cast<int>(workers_.size()) < t) {
        const int index = static_cast<int>(workers_.size());
        workers_.emplace_back([this, index] { loop(index); });
      }
      threads_.store(t);
    }
    cv_.notify_all();  // workers above the new count idle; below it, they may take work
  }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
    auto job = std::make_shared<Job>();
    job->body = &body;
    job->n = n;
    job->grain = grain;
    job->chunks = (n + grain - 1) / grain;
    // The caller counts as one thread even when it is not a pool thread, so that a stream's
    // op (on a pool thread) and a host call alike use at most threads() threads.
    const int helpers = static_cast<int>(std::min<int64_t>(threads() - 1, job->chunks - 1));
    if (helpers > 0) {
      std::lock_guard<std::mutex> lock(m_);
      job->helpersWanted = helpers;
      jobs_.push_back(job);
      notify(helpers);
    }
    job->work();
    if (helpers > 0) {  // helpers busy elsewhere never came: withdraw the request
      std::lock_guard<std::mutex> lock(m_);
      auto it = std::find(jobs_.begin(), jobs_.end(), job);
      if (it != jobs_.end()) jobs_.erase(it);
    }
    std::unique_lock<std::mutex> lock(job->m);
    job->finished.wait(lock, [&] { return job->done.load() == job->chunks; });
  }

  void schedule(PoolClient* client, bool first) {
    std::lock_guard<std::mutex> lock(m_);
    if (first) clients_.push_front(client); else clients_.push_back(client);
    clientsWaiting_.store(clients_.size());
    notify(1);
  }

  bool clientsWaiting() const { return clientsWaiting_.load(std::memory_order_relaxed) > 0; }

 private:
  Pool() {
    int t = static_cast<int>(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("SYNTHGRAD_NUM_THREADS")) t = std::atoi(env);
    setThreads(t > 0 ? t : 1);
  }

  // Wakes enough workers for `count` new items (m_ held). Workers above threads() ignore
  // work, so when some exist a single notification could reach only those: then all wake.
  void notify(int count) {
    if (count > 1 || static_cast<int>(workers_.size()) > threads_.load())
      cv_.notify_all();
    else
      cv_.notify_one();
  }

  // A worker serves the next scheduled stream first, then helps parallelFor calls: a waiting
  // stream may hold the step's critical path, while a call without help still progresses (its
  // caller works on it), as with a thread per stream.
  void loop(int index) {
    for (;;) {
      std::shared_ptr<Job> job;
      PoolClient* client = nullptr;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] {
          return index < threads_.load() && (!jobs_.empty() || !clients_.empty());
        });
        if (!clients_.empty()) {
          client = clients_.front();
          clients_.pop_front();
          clientsWaiting_.store(clients_.size());
        } else {
          job = jobs_.front();
          if (--job->helpersWanted == 0) jobs_.pop_front();
        }
      }
      if (job) job->work(); else client->serve();
    }
  }

  std::atomic<int> threads_{1};
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> jobs_;  // parallelFor calls that want helpers
  std::deque<PoolClient*> clients_;
  std::atomic<size_t> clientsWaiting_{0};
  std::vector<std::thread> workers_;
};

}  // namespace

void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  // Nested calls (a chunk that itself calls parallelFor) and small loops run inline.
  if (n <= grain || insideChunk || Pool::instance().threads() == 1) {
    for (int64_t b = 0; b < n; b += grain) body(b, std::min(n, b + grain));
    return;
  }
  Pool::instance().run(n, grain, body);
}

int parallelism() { return Pool::instance().threads(); }

void setParallelism(int threads) { Pool::instance().setThreads(threads); }

void schedule(PoolClient* client, bool first) { Pool::instance().schedule(client, first); }

bool clientsWaiting() { return Pool::instance().clientsWaiting(); }

}  // namespace sg
