// Checks of the CPU streams on the shared pool (native/cpu/cpu_streams.cpp, core/parallel.cpp):
// FIFO order, one task of a stream at a time, waits that park a stream instead of blocking a
// pool thread (many streams waiting with a pool of 2, a chain of waits across many streams),
// draining on destruction, cancelQueued dropping only the caller thread's ops, and
// parallelFor inside stream tasks. Built and run by build.sh here (also under TSan).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "cpu/cpu_runtime.h"

using sg::cpu_backend::CpuEvent;
using sg::cpu_backend::CpuStream;

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  std::fflush(stdout);
  if (!ok) ++failures;
}

// Waits (at most 30 s: a deadlock fails instead of hanging) until `done` is set.
bool finishes(const std::atomic<bool>& done) {
  for (int i = 0; i < 30000 && !done.load(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return done.load();
}

// The host's wait for everything queued on `s` so far.
bool drain(CpuStream& s) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  s.whenDone([done](const std::string&) { done->store(true); });
  return finishes(*done);
}

void fifoOrder() {
  auto s = std::make_shared<CpuStream>();
  std::vector<int> seen;
  for (int i = 0; i < 2000; ++i) s->enqueue([&seen, i] { seen.push_back(i); });
  bool finished = drain(*s);
  bool ordered = seen.size() == 2000;
  for (size_t i = 0; ordered && i < seen.size(); ++i) ordered = seen[i] == static_cast<int>(i);
  check(finished && ordered, "one stream runs its 2000 tasks in FIFO order");
}

void oneTaskAtATime() {
  constexpr int kStreams = 8, kTasks = 300;
  std::vector<std::shared_ptr<CpuStream>> streams;
  std::vector<std::unique_ptr<std::atomic<int>>> running, maxRunning;
  std::vector<std::vector<int>> order(kStreams);
  for (int s = 0; s < kStreams; ++s) {
    streams.push_back(std::make_shared<CpuStream>());
    running.push_back(std::make_unique<std::atomic<int>>(0));
    maxRunning.push_back(std::make_unique<std::atomic<int>>(0));
  }
  for (int t = 0; t < kTasks; ++t)
    for (int s = 0; s < kStreams; ++s)
      streams[s]->enqueue([&, s, t] {
        int now = running[s]->fetch_add(1) + 1;
        int seenMax = maxRunning[s]->load();
        while (now > seenMax && !maxRunning[s]->compare_exchange_weak(seenMax, now)) {
        }
        volatile double x = 0;
        for (int i = 0; i < 2000; ++i) x = x + i * 0.5;
        order[s].push_back(t);
        running[s]->fetch_sub(1);
      });
  bool finished = true, ordered = true, single = true;
  for (auto& s : streams) finished = drain(*s) && finished;
  for (int s = 0; s < kStreams; ++s) {
    single = single && maxRunning[s]->load() == 1;
    ordered = ordered && order[s].size() == kTasks;
    for (int t = 0; ordered && t < kTasks; ++t) ordered = order[s][t] == t;
  }
  check(finished && single && ordered,
        "8 streams: each runs one task at a time, in its own order");
}

// `waiters` streams each wait for their own event, recorded later on another stream behind
// slow work: with blocking waits a pool of 2 would deadlock. Each waiter checks that the
// recorder's task just before its record has run.
void manyWaiters(int waiters) {
  auto recorder = std::make_shared<CpuStream>();
  std::vector<std::shared_ptr<CpuStream>> streams;
  std::vector<std::shared_ptr<CpuEvent>> events;
  std::vector<std::unique_ptr<std::atomic<bool>>> before(waiters);
  std::atomic<int> sawBefore{0};
  recorder->enqueue([] { std::this_thread::sleep_for(std::chrono::milliseconds(50)); });
  for (int i = 0; i < waiters; ++i) {
    before[i] = std::make_unique<std::atomic<bool>>(false);
    recorder->enqueue([&, i] { before[i]->store(true); });
    events.push_back(std::make_shared<CpuEvent>());
    events.back()->record(*recorder);  // queued behind the sleep: incomplete for 50 ms
  }
  for (int i = 0; i < waiters; ++i) {
    streams.push_back(std::make_shared<CpuStream>());
    streams.back()->wait(*events[i]);
    streams.back()->enqueue([&, i] { sawBefore += before[i]->load() ? 1 : 0; });
  }
  bool finished = true;
  for (auto& s : streams) finished = drain(*s) && finished;
  char what[160];
  std::snprintf(what, sizeof what,
                "%d streams waiting on events recorded later by another stream finish (pool %d), "
                "each after its record",
                waiters, sg::parallelism());
  check(finished && sawBefore.load() == waiters, what);
}

// Stream k waits for an event that stream k-1 records after its task: the tasks must run
// in stream order although every stream was fed before any ran.
void chainOfWaits(int length) {
  std::vector<std::shared_ptr<CpuStream>> streams;
  std::vector<std::shared_ptr<CpuEvent>> events;
  std::vector<int> order;
  std::mutex m;
  auto gate = std::make_shared<CpuStream>();
  auto opened = std::make_shared<CpuEvent>();
  gate->enqueue([] { std::this_thread::sleep_for(std::chrono::milliseconds(20)); });
  opened->record(*gate);
  for (int k = 0; k < length; ++k) {
    streams.push_back(std::make_shared<CpuStream>());
    streams[k]->wait(k == 0 ? *opened : *events[k - 1]);
    streams[k]->enqueue([&, k] {
      std::lock_guard<std::mutex> lock(m);
      order.push_back(k);
    });
    events.push_back(std::make_shared<CpuEvent>());
    events[k]->record(*streams[k]);
  }
  bool finished = drain(*streams.back());
  bool inOrder = order.size() == static_cast<size_t>(length);
  for (int k = 0; inOrder && k < length; ++k) inOrder = order[k] == k;
  for (auto& s : streams) finished = drain(*s) && finished;
  char what[120];
  std::snprintf(what, sizeof what, "a chain of waits across %d streams completes in order",
                length);
  check(finished && inOrder, what);
}

void destructionDrains() {
  std::atomic<int> ran{0};
  {
    auto gate = std::make_shared<CpuStream>();
    auto event = std::make_shared<CpuEvent>();
    gate->enqueue([] { std::this_thread::sleep_for(std::chrono::milliseconds(30)); });
    event->record(*gate);
    auto s = std::make_shared<CpuStream>();
    s->wait(*event);  // parked when it is released below
    for (int i = 0; i < 500; ++i) s->enqueue([&] { ++ran; });
    s.reset();  // the destructor waits for the 500 tasks
    check(ran.load() == 500, "destroying a stream (parked on a wait) runs its queued tasks first");
  }
}

void cancelOnlyOwnOps() {
  auto s = std::make_shared<CpuStream>();
  auto event = std::make_shared<CpuEvent>();
  auto gate = std::make_shared<CpuStream>();
  std::atomic<bool> release{false};
  gate->enqueue([&] {
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  event->record(*gate);
  s->wait(*event);  // holds everything below in the queue
  std::atomic<int> mine{0}, theirs{0}, control{0};
  for (int i = 0; i < 10; ++i) s->enqueue([&] { ++mine; });
  std::thread other([&] {
    for (int i = 0; i < 7; ++i) s->enqueue([&] { ++theirs; });
  });
  other.join();
  s->enqueueControl([&] { ++control; });
  size_t dropped = s->cancelQueued();
  std::string error = "unset";
  std::atomic<bool> done{false};
  s->whenDone([&](const std::string& e) {
    error = e;
    done.store(true);
  });
  release.store(true);
  bool finished = finishes(done);
  check(finished && dropped == 10 && mine.load() == 0 && theirs.load() == 7 &&
            control.load() == 1 && error.find("cancelled") == 0,
        "cancelQueued on a parked stream drops only the caller's ops and reports it");
}

void errorsPerStream() {
  auto bad = std::make_shared<CpuStream>();
  auto good = std::make_shared<CpuStream>();
  std::atomic<int> after{0};
  bad->enqueue([] { throw std::runtime_error("boom"); });
  bad->enqueue([&] { ++after; });
  good->enqueue([&] { ++after; });
  std::string badError = "unset", goodError = "unset";
  std::atomic<bool> d1{false}, d2{false};
  bad->whenDone([&](const std::string& e) { badError = e; d1.store(true); });
  good->whenDone([&](const std::string& e) { goodError = e; d2.store(true); });
  bool finished = finishes(d1) && finishes(d2);
  check(finished && badError == "boom" && goodError.empty() && after.load() == 2,
        "an error is reported by its own stream only, which keeps running");
}

void eventHostCallbacks() {
  auto s = std::make_shared<CpuStream>();
  auto event = std::make_shared<CpuEvent>();
  std::atomic<bool> taskRan{false}, sawTask{false}, done{false};
  s->enqueue([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    taskRan.store(true);
  });
  event->record(*s);
  event->whenDone([&] {
    sawTask.store(taskRan.load());
    done.store(true);
  });
  check(finishes(done) && sawTask.load(), "event.whenDone runs after the recorded work");
}

// Ops on several streams at once, each splitting its work with parallelFor.
void parallelForInStreams() {
  constexpr int kStreams = 6, kOps = 40, kN = 20000;
  std::vector<std::shared_ptr<CpuStream>> streams;
  std::vector<std::vector<double>> sums(kStreams, std::vector<double>(kOps));
  for (int s = 0; s < kStreams; ++s) streams.push_back(std::make_shared<CpuStream>());
  for (int op = 0; op < kOps; ++op)
    for (int s = 0; s < kStreams; ++s)
      streams[s]->enqueue([&, s, op] {
        std::vector<double> partial((kN + 999) / 1000);
        sg::parallelFor(kN, 1000, [&](int64_t b, int64_t e) {
          double acc = 0;
          for (int64_t i = b; i < e; ++i) acc += static_cast<double>(i % 97) * (s + 1);
          partial[b / 1000] = acc;
        });
        double total = 0;
        for (double p : partial) total += p;
        sums[s][op] = total;
      });
  bool finished = true, right = true;
  for (auto& s : streams) finished = drain(*s) && finished;
  double expected = 0;
  for (int i = 0; i < kN; ++i) expected += i % 97;
  for (int s = 0; s < kStreams; ++s)
    for (int op = 0; op < kOps; ++op) right = right && sums[s][op] == expected * (s + 1);
  check(finished && right, "parallelFor inside tasks of 6 streams at once gives exact sums");
}

}  // namespace

int main(int argc, char** argv) {
  // A deadlock would leave the streams' destructors waiting forever: fail instead.
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::seconds(300));
    std::fprintf(stderr, "FAIL: the checks did not finish in 300 s (a deadlock?)\n");
    std::_Exit(2);
  }).detach();
  // The pool sizes to try (default: 2, 1 and 4).
  std::vector<int> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(std::atoi(argv[i]));
  if (sizes.empty()) sizes = {2, 1, 4};
  for (int threads : sizes) {
    sg::setParallelism(threads);
    std::printf("-- pool of %d\n", sg::parallelism());
    fifoOrder();
    oneTaskAtATime();
    manyWaiters(16);
    chainOfWaits(64);
    destructionDrains();
    cancelOnlyOwnOps();
    errorsPerStream();
    eventHostCallbacks();
    parallelForInStreams();
  }
  std::printf(failures ? "%d check(s) failed\n" : "all checks passed\n", failures);
  return failures ? 1 : 0;
}
