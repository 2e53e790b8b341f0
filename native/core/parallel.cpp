// A small process-wide pool for parallelFor; see parallel.h for the contract.
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

// One parallelFor call: chunks are claimed with an atomic counter by the caller and helpers.
struct Job {
  const std::function<void(int64_t, int64_t)>* body;
  int64_t n, grain, chunks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex m;
  std::condition_variable finished;

  // Runs chunks until none is left; returns true if this call finished the last chunk.
  void work() {
    for (int64_t c; (c = next.fetch_add(1)) < chunks;) {
      int64_t begin = c * grain, end = std::min(n, begin + grain);
      (*body)(begin, end);
      if (done.fetch_add(1) + 1 == chunks) {
        std::lock_guard<std::mutex> lock(m);
        finished.notify_all();
      }
    }
  }
};

thread_local bool insidePoolWork = false;

class Pool {
 public:
  static Pool& instance() {
    static Pool* pool = new Pool();  // never destroyed: workers may outlive static teardown
    return *pool;
  }

  int threads() const { return threads_.load(); }

  void setThreads(int t) {
    t = std::max(1, t);
    std::lock_guard<std::mutex> lock(m_);
    while (static_cast<int>(workers_.size()) < t - 1)
      workers_.emplace_back([this] { loop(); });
    threads_.store(t);
  }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
    auto job = std::make_shared<Job>();
    job->body = &body;
    job->n = n;
    job->grain = grain;
    job->chunks = (n + grain - 1) / grain;
    int helpers = std::min<int64_t>(threads() - 1, job->chunks - 1);
    {
      std::lock_guard<std::mutex> lock(m_);
      for (int i = 0; i < helpers; ++i) queue_.push_back(job);
    }
    if (helpers == 1) cv_.notify_one(); else if (helpers > 1) cv_.notify_all();
    insidePoolWork = true;
    job->work();
    insidePoolWork = false;
    std::unique_lock<std::mutex> lock(job->m);
    job->finished.wait(lock, [&] { return job->done.load() == job->chunks; });
  }

 private:
  Pool() {
    int t = static_cast<int>(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("SYNTHGRAD_NUM_THREADS")) t = std::atoi(env);
    setThreads(t > 0 ? t : 1);
  }

  void loop() {
    insidePoolWork = true;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return !queue_.empty(); });
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job->work();
    }
  }

  std::atomic<int> threads_{1};
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::vector<std::thread> workers_;
};

}  // namespace

void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  // Nested calls (a chunk that itself calls parallelFor) and small loops run inline.
  if (n <= grain || insidePoolWork || Pool::instance().threads() == 1) {
    for (int64_t b = 0; b < n; b += grain) body(b, std::min(n, b + grain));
    return;
  }
  Pool::instance().run(n, grain, body);
}

int parallelism() { return Pool::instance().threads(); }

void setParallelism(int threads) { Pool::instance().setThreads(threads); }

}  // namespace sg
