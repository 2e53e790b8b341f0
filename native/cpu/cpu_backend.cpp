// CPU backend: streams as worker threads, events as counters, a caching host allocator.
#include "cpu_backend.h"

#include <algorithm>
#include <condition_variable>
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

class CpuStream : public Stream {
 public:
  CpuStream() : worker_([this] { loop(); }) {}

  ~CpuStream() override {
    {
      std::lock_guard<std::mutex> lock(m_);
      stopping_ = true;
    }
    cv_.notify_all();
    worker_.join();  // drains the queue first
  }

  Device device() const override { return kCpu; }

  void enqueue(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(m_);
      queue_.push_back(std::move(task));
    }
    cv_.notify_one();
  }

  void wait(Event& event) override;

  void whenDone(std::function<void(const std::string&)> done) override {
    enqueue([this, done = std::move(done)] {
      std::string error;
      {
        std::lock_guard<std::mutex> lock(m_);
        error.swap(error_);
      }
      done(error);
    });
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = std::move(queue_.front());
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
  std::deque<std::function<void()>> queue_;
  std::string error_;
  bool stopping_ = false;
  std::thread worker_;  // last: starts after the members it uses exist
};

// Records are numbered; a record completes when its stream reaches it. Waiting for an event
// means waiting for the record that was latest when the wait was enqueued.
class CpuEvent : public Event {
 public:
  Device device() const override { return kCpu; }

  void record(Stream& stream) override {
    uint64_t ticket;
    {
      std::lock_guard<std::mutex> lock(state_->m);
      ticket = ++state_->recorded;
    }
    static_cast<CpuStream&>(stream).enqueue([state = state_, ticket] {
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
    {
      std::lock_guard<std::mutex> lock(state_->m);
      if (state_->completed < state_->recorded) {
        state_->waiters.emplace_back(state_->recorded, std::move(done));
        return;
      }
    }
    done();
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

void CpuStream::wait(Event& event) { enqueue(static_cast<CpuEvent&>(event).waitTask()); }

// ---- the backend ------------------------------------------------------------------------

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

  std::shared_ptr<Stream> createStream() override { return std::make_shared<CpuStream>(); }
  std::shared_ptr<Event> createEvent() override { return std::make_shared<CpuEvent>(); }
  Stream& defaultStream() override {
    static CpuStream* stream = new CpuStream();  // lives as long as the process
    return *stream;
  }

  void upload(const Tensor& dst, const void* host) override {
    std::memcpy(dst.storage->data(), host, dst.bytes());
  }
  void download(Stream& s, const Tensor& src, void* host) override {
    cpu(s).enqueue([src, host] { std::memcpy(host, src.storage->data(), src.bytes()); });
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
  void sgdStep(Stream& s, const Tensor& param, const Tensor& grad, const Tensor& velocity,
               float lr, float momentum, float weightDecay) override {
    cpu(s).enqueue([=] {
      cpu::sgdStep(param.f32(), grad.f32(), velocity.storage ? velocity.f32() : nullptr,
                   param.numel(), lr, momentum, weightDecay);
    });
  }
  void adamStep(Stream& s, const Tensor& param, const Tensor& grad, const Tensor& m,
                const Tensor& v, float lr, float beta1, float beta2, float eps, float weightDecay,
                int64_t step) override {
    cpu(s).enqueue([=] {
      cpu::adamStep(param.f32(), grad.f32(), m.f32(), v.f32(), param.numel(), lr, beta1, beta2,
                    eps, weightDecay, step);
    });
  }

 private:
  static std::string labelError(const char* op, int64_t classes) {
    return std::string(op) + ": a label is outside [0, " + std::to_string(classes) + ")";
  }
};

}  // namespace

Backend& cpuBackend() {
  static CpuBackend* backend = new CpuBackend();
  return *backend;
}

}  // namespace sg
