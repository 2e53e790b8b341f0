// cuda/cuda_backend.cu on the fake CUDA runtime (fake_runtime.cpp): the allocator's
// cross-stream fences, events between streams, the capture bookkeeping (which blocks a graph
// owns, out of memory during a capture, a stream released while joined to one) and the
// completion path (whenDone settles, also after a device fault, when CUDA runs no more host
// functions). Run by run.sh; no GPU involved. Each check prints ok/FAIL; exit 1 on a failure.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cpu/kernels.h"
#include "cuda_backend.h"
#include "fake_runtime.h"

using namespace sg;
using namespace std::chrono_literals;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) ++failures;
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
}

Tensor tensorOf(std::shared_ptr<Storage> storage, int64_t n) {
  Tensor t;
  t.shape = {n};
  t.storage = std::move(storage);
  return t;
}

// whenDone as a future of its error text.
std::future<std::string> done(Stream& s) {
  auto p = std::make_shared<std::promise<std::string>>();
  s.whenDone([p](const std::string& e) { p->set_value(e); });
  return p->get_future();
}

bool settlesWithin(std::future<std::string>& f, std::chrono::milliseconds ms) {
  return f.wait_for(ms) == std::future_status::ready;
}

std::vector<float> read(Backend& b, Stream& s, const Tensor& t) {
  std::vector<float> host(t.numel());
  b.download(s, t, host.data(), nullptr);  // `host` outlives the synchronize below
  done(s).get();
  return host;
}

// The newest stream of the fake runtime: the one createStream() just made.
cudaStream_t newestStream() { return fake::streams().back(); }

void fences(Backend& b) {
  auto a = b.createStream();
  cudaStream_t rawA = newestStream();
  fake::stall(rawA, true);
  auto block = b.allocate(4096);
  void* p = block->data();
  b.fill(*a, tensorOf(block, 1024), 1.5);  // pending: stream A is held
  block.reset();                            // released while A's fill still uses it
  auto other = b.allocate(4096);
  check(other->data() != p,
        "fences: a block released while another stream's queued work uses it is not reused");
  fake::stall(rawA, false);
  auto f = done(*a);
  check(settlesWithin(f, 10000ms) && f.get().empty(), "fences: the stream's whenDone settles");
  bool reused = false;
  for (int i = 0; i < 200 && !reused; ++i) {  // the fence's event records run on the workers
    auto again = b.allocate(4096);
    reused = again->data() == p;
    if (!reused) std::this_thread::sleep_for(5ms);
  }
  check(reused, "fences: the block is reused once every stream has passed its fence");
}

void events(Backend& b) {
  auto a = b.createStream();
  cudaStream_t rawA = newestStream();
  auto s = b.createStream();
  auto e = b.createEvent();
  Tensor x = tensorOf(b.allocate(4096), 1024), y = tensorOf(b.allocate(4096), 1024);
  b.fill(*s, y, 0.0);
  done(*s).get();
  fake::stall(rawA, true);
  b.fill(*a, x, 2.5);
  e->record(*a);
  s->wait(*e);
  b.copy(*s, x, y);
  auto f = done(*s);
  check(!settlesWithin(f, 100ms), "events: a stream waiting on another's event does not run ahead");
  fake::stall(rawA, false);
  check(settlesWithin(f, 10000ms), "events: it runs once the event's stream has reached the record");
  const std::vector<float> got = read(b, *s, y);
  check(got[0] == 2.5f && got[1023] == 2.5f, "events: the waiting stream saw the other's writes");
  auto ef = std::make_shared<std::promise<void>>();
  e->whenDone([ef] { ef->set_value(); });
  check(ef->get_future().wait_for(10000ms) == std::future_status::ready,
        "events: Event::whenDone settles after its record");
}

void capture(Backend& b) {
  const int misuses = fake::misuses();
  auto s = b.createStream();
  auto before = b.allocate(4096);  // allocated before the capture, released during it
  void* beforePtr = before->data();
  b.beginCapture(*s);
  auto scratch = b.allocate(8192);  // an op's scratch: handed out and released in the capture
  void* scratchPtr = scratch->data();
  b.fill(*s, tensorOf(scratch, 2048), 3.0);
  scratch.reset();
  before.reset();
  std::unique_ptr<Graph> graph = b.endCapture(*s);
  check(graph != nullptr && fake::misuses() == misuses,
        "capture: begin/end with no synchronisation, destroy or cudaFree inside");
  bool scratchReused = false, beforeReused = false;
  // The release fences behind the stream's worker: poll for up to 10 s (a loaded machine may
  // take far longer than the 100 rounds that always watch the graph's block).
  for (int i = 0; i < 100 || (!beforeReused && i < 5000); ++i) {
    auto x = b.allocate(8192), y = b.allocate(4096);
    scratchReused |= x->data() == scratchPtr;
    beforeReused |= y->data() == beforePtr;
    std::this_thread::sleep_for(2ms);
  }
  check(!scratchReused, "capture: a block handed out and released during it stays the graph's");
  check(beforeReused, "capture: a block from before it, released during it, is reused after it");
  graph->launch(*s);
  auto f = done(*s);
  check(settlesWithin(f, 10000ms) && f.get().empty(), "capture: the graph launches and completes");
  graph.reset();  // its blocks retire: reusable after the next fence
  bool freed = false;
  for (int i = 0; i < 200 && !freed; ++i) {
    auto x = b.allocate(8192);
    freed = x->data() == scratchPtr;
    if (!freed) std::this_thread::sleep_for(5ms);
  }
  check(freed, "capture: the graph's blocks are reused once it is destroyed");
}

void outOfMemoryInCapture(Backend& b) {
  const int misuses = fake::misuses(), frees = fake::frees();
  auto s = b.createStream();
  { auto cached = b.allocate(1 << 16); }  // a cached block the OOM path would give back
  fake::setMemoryLimit(fake::memoryInUse() + (1 << 17));
  b.beginCapture(*s);
  std::string error;
  try {
    auto big = b.allocate(size_t(1) << 20);
  } catch (const std::exception& e) {
    error = e.what();
  }
  auto graph = b.endCapture(*s);
  check(error.find("CUDA out of memory") != std::string::npos &&
            error.find("graph capture") != std::string::npos,
        "out of memory during a capture: a clear error (" + error + ")");
  check(fake::frees() == frees && fake::misuses() == misuses && graph != nullptr,
        "out of memory during a capture: no cudaFree, the capture stays valid");
  std::string after;
  try {
    auto big = b.allocate(size_t(1) << 20);
  } catch (const std::exception& e) {
    after = e.what();
  }
  check(fake::frees() > frees && after.find("CUDA out of memory") != std::string::npos,
        "out of memory outside a capture: the cache is given back first, then the error");
  fake::setMemoryLimit(size_t(1) << 34);
}

void streamReleasedInCapture(Backend& b) {
  const int misuses = fake::misuses();
  auto origin = b.createStream();
  auto joined = b.createStream();
  auto fork = b.createEvent(), join = b.createEvent();
  Tensor t = tensorOf(b.allocate(4096), 1024);
  const size_t streamsBefore = fake::streams().size();
  b.beginCapture(*origin);
  fork->record(*origin);
  joined->wait(*fork);  // joins the capture
  b.fill(*joined, t, 4.0);
  join->record(*joined);
  origin->wait(*join);  // rejoins
  joined.reset();       // released while part of the capture
  check(fake::streams().size() == streamsBefore && fake::misuses() == misuses,
        "a stream released while joined to a capture is neither synchronised nor destroyed then");
  auto graph = b.endCapture(*origin);
  check(graph != nullptr && fake::streams().size() == streamsBefore - 1 &&
            fake::misuses() == misuses,
        "... and is destroyed after endCapture");
  graph->launch(*origin);
  const std::vector<float> got = read(b, *origin, t);
  check(got[0] == 4.0f, "... and the graph still runs its work");
}

void faultSettlesWhenDone(Backend& b) {
  auto s = b.createStream();
  cudaStream_t raw = newestStream();
  Tensor t = tensorOf(b.allocate(4096), 1024);
  fake::stall(raw, true);
  b.fill(*s, t, 1.0);
  auto f = done(*s);
  fake::fail(cudaErrorIllegalAddress);  // nothing queued will run, host functions included
  fake::stall(raw, false);
  const bool settled = settlesWithin(f, 10000ms);
  const std::string error = settled ? f.get() : "";
  check(settled && error.find("cudaErrorIllegalAddress") != std::string::npos,
        "after a device fault, a pending whenDone settles with the error (" + error + ")");
}

// Issue 24: a read after a step's ops is ONE host function (the download's copy out of
// staging and the label flags' checks are host work that the whenDone's host function does).
void oneHostFunctionPerRead(Backend& b) {
  auto s = b.createStream();
  const int rows = 8, classes = 5;
  Tensor logits = tensorOf(b.allocate(rows * classes * 4), rows * classes);
  logits.shape = {rows, classes};
  Tensor labels = tensorOf(b.allocate(rows * 4), rows);
  labels.dtype = DType::Int32;
  Tensor probs = tensorOf(b.allocate(rows * classes * 4), rows * classes);
  probs.shape = {rows, classes};
  Tensor loss = tensorOf(b.allocate(4), 1);
  std::vector<float> z(rows * classes);
  for (int i = 0; i < rows * classes; ++i) z[i] = 0.25f * float(i % 7) - 0.5f;
  b.upload(logits, z.data());
  auto step = [&](int badRow) {  // a forward whose labels are in range unless badRow >= 0
    std::vector<int32_t> lab(rows);
    for (int r = 0; r < rows; ++r) lab[r] = r == badRow ? classes : (r % 3 == 0 ? -1 : r % classes);
    b.upload(labels, lab.data());
    b.softmaxCrossEntropyForward(*s, logits, labels, probs, loss);
    b.softmaxCrossEntropyForward(*s, logits, labels, probs, loss);
  };
  step(-1);
  done(*s).get();
  int before = fake::hostFunctions();
  step(-1);
  float host = -1;
  b.download(*s, loss, &host, nullptr);
  std::string error = done(*s).get();
  check(fake::hostFunctions() - before == 1 && error.empty() && host > 0 && std::isfinite(host),
        "a read after two label-checked ops is one host function, with the loss (" +
            std::to_string(fake::hostFunctions() - before) + " host functions, loss " +
            std::to_string(host) + ")");
  // A label out of range: the error comes with that same read, once.
  before = fake::hostFunctions();
  step(3);
  b.download(*s, loss, &host, nullptr);
  error = done(*s).get();
  check(fake::hostFunctions() - before == 1 &&
            error.find("softmaxCrossEntropyForward: a label is outside [0, 5)") != std::string::npos,
        "a label out of range is reported by the read's one host function (" + error + ")");
  check(done(*s).get().empty(), "... once: the next whenDone has no error");
  // Many reads and no whenDone: pending host work goes in host functions of its own, every
  // kMaxHostWork items; all copies are in place once the stream is synchronised.
  const int n = 150;
  std::vector<float> values(n, -1.0f);
  Tensor one = tensorOf(b.allocate(4), 1);
  const float v = 2.5f;
  b.upload(one, &v);
  before = fake::hostFunctions();
  for (int i = 0; i < n; ++i) b.download(*s, one, &values[i], nullptr);
  const int queued = fake::hostFunctions() - before;
  done(*s).get();
  bool all = true;
  for (float x : values) all = all && x == 2.5f;
  check(queued == n / 64 && all,
        "downloads without a whenDone: a host function per 64 pending, all copied (" +
            std::to_string(queued) + " host functions)");
  // A stream released with host work pending still does it (after its final synchronisation).
  auto t = b.createStream();
  cudaStream_t raw = newestStream();
  fake::stall(raw, true);
  float late = -1;
  b.download(*t, one, &late, nullptr);
  fake::stall(raw, false);
  t.reset();
  check(late == 2.5f, "a stream released with a download pending still copies it out");
}

// uploadAsync: the host neither waits for the stream nor overwrites a staging buffer whose
// copy has not run (checked on a held stream), up to 4 buffers in flight; the 5th upload waits
// for the oldest copy. Refused during a capture.
void uploadsInStreamOrder(Backend& b) {
  auto s = b.createStream();
  cudaStream_t raw = newestStream();
  const int n = 3000, uploads = 6;  // more than the 4 buffers in flight
  std::vector<Tensor> dst;
  for (int i = 0; i < uploads; ++i) dst.push_back(tensorOf(b.allocate(n * 4), n));
  std::vector<float> host(n);
  auto fill = [&](int i) {
    for (int j = 0; j < n; ++j) host[j] = float(i * 10000 + j);
  };
  fake::stall(raw, true);
  for (int i = 0; i < 4; ++i) {
    fill(i);  // the same host buffer, changed after each call
    b.uploadAsync(*s, dst[i], host.data());
  }
  // Returning here at all shows the host did not wait for the held stream. The next upload
  // must wait for the oldest copy: release the stream a little later, from another thread.
  const auto t0 = std::chrono::steady_clock::now();
  std::thread release([raw] {
    std::this_thread::sleep_for(200ms);
    fake::stall(raw, false);
  });
  for (int i = 4; i < uploads; ++i) {
    fill(i);
    b.uploadAsync(*s, dst[i], host.data());
  }
  const auto waited = std::chrono::steady_clock::now() - t0;
  release.join();
  bool all = true;
  for (int i = 0; i < uploads; ++i) {
    std::vector<float> got = read(b, *s, dst[i]);
    for (int j = 0; j < n; ++j) all = all && got[j] == float(i * 10000 + j);
  }
  check(all, "uploadAsync: 6 uploads from one changing host buffer, each tensor gets its data");
  check(waited >= 150ms, "uploadAsync: with 4 copies held back, the 5th waits for the oldest");

  // Ordered on the stream: a read enqueued before the upload sees the old contents.
  fake::stall(raw, true);
  std::vector<float> before(n, -1.0f);
  b.download(*s, dst[0], before.data(), nullptr);
  fill(7);
  b.uploadAsync(*s, dst[0], host.data());
  fake::stall(raw, false);
  std::vector<float> after = read(b, *s, dst[0]);
  check(before[5] == 5.0f && after[5] == 70005.0f,
        "uploadAsync: ordered with the stream's other work (a read before it sees the old data)");

  const int misuses = fake::misuses();
  b.beginCapture(*s);
  std::string error;
  try {
    b.uploadAsync(*s, dst[0], host.data());
  } catch (const std::exception& e) {
    error = e.what();
  }
  std::unique_ptr<Graph> graph = b.endCapture(*s);
  check(error.find("being captured") != std::string::npos && fake::misuses() == misuses,
        "uploadAsync: refused while the stream is capturing (" + error + ")");
}

// BatchNorm + ReLU (cuda/cuda_batchnorm_relu.cu, composed of the BatchNorm and ReLU kernels):
// bit for bit the separate ops on the same backend, and within float32 rounding of the CPU's
// fused kernels (whose BatchNorm reductions add in another order).
void batchNormRelu(Backend& b) {
  const int64_t rows = 37, cols = 45, n = rows * cols;
  auto s = b.createStream();
  auto make = [&](std::vector<int64_t> shape, const std::vector<float>& host) {
    Tensor t;
    t.shape = shape;
    t.storage = b.allocate(host.size() * sizeof(float));
    b.upload(t, host.data());
    return t;
  };
  std::vector<float> x(n), dy(n), gamma(cols), beta(cols), rm(cols, 0.1f), rv(cols, 1.5f), zeros(n);
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::sin(0.37f * i) * (1 + i % 7) + 0.2f * (i % cols);
    dy[i] = std::cos(0.91f * i);
  }
  for (int64_t c = 0; c < cols; ++c) {
    gamma[c] = 0.5f + 0.03f * c;
    beta[c] = 0.4f * std::sin(1.3f * c);
  }
  // outputs[k]: y, runningMean, runningVar, saveMean, saveInvStd, dx, dgamma, dbeta
  auto run = [&](bool fused) {
    std::vector<Tensor> t = {make({rows, cols}, zeros), make({cols}, rm), make({cols}, rv),
                             make({cols}, gamma), make({cols}, gamma), make({rows, cols}, zeros),
                             make({cols}, beta), make({cols}, gamma)};
    Tensor tx = make({rows, cols}, x), tdy = make({rows, cols}, dy);
    Tensor tg = make({cols}, gamma), tb = make({cols}, beta);
    if (fused) {
      b.batchNormReluForward(*s, tx, tg, tb, t[0], t[1], t[2], t[3], t[4], 0.1f, 1e-5f, true);
      b.batchNormReluBackward(*s, tx, t[0], tdy, tg, t[3], t[4], t[5], t[6], t[7]);
    } else {
      b.batchNormForward(*s, tx, tg, tb, t[0], t[1], t[2], t[3], t[4], 0.1f, 1e-5f, true);
      b.activationForward(*s, Activation::Relu, t[0], t[0]);
      Tensor masked = make({rows, cols}, zeros);
      b.activationBackward(*s, Activation::Relu, t[0], tdy, masked);
      b.batchNormBackward(*s, tx, masked, tg, t[3], t[4], t[5], t[6], t[7]);
    }
    std::vector<std::vector<float>> out;
    for (const Tensor& o : t) out.push_back(read(b, *s, o));
    return out;
  };
  const auto fused = run(true), separate = run(false);
  check(fused == separate, "batchNormRelu: the fused ops equal the separate ones bit for bit");

  std::vector<float> y(n), rm2 = rm, rv2 = rv, sm(cols), si(cols), dx(n), dg = beta, db = gamma;
  cpu::batchNormForward(x.data(), gamma.data(), beta.data(), y.data(), rm2.data(), rv2.data(),
                        sm.data(), si.data(), rows, cols, 0.1f, 1e-5f, true, /*relu=*/true);
  cpu::batchNormBackward(x.data(), dy.data(), gamma.data(), sm.data(), si.data(), dx.data(),
                         dg.data(), db.data(), rows, cols, /*reluOutput=*/y.data());
  const std::vector<float>* want[] = {&y, &rm2, &rv2, &sm, &si, &dx, &dg, &db};
  double worst = 0;
  int zeros0 = 0;
  for (int k = 0; k < 8; ++k) {
    double scale = 1e-3;
    for (float v : *want[k]) scale = std::max(scale, double(std::fabs(v)));
    for (size_t i = 0; i < want[k]->size(); ++i)
      worst = std::max(worst, std::fabs(double(fused[k][i]) - (*want[k])[i]) / scale);
  }
  for (float v : fused[0]) zeros0 += v == 0.0f;
  check(worst < 1e-5 && zeros0 > 0 && zeros0 < n,
        "batchNormRelu: matches the CPU's fused kernels (worst " + std::to_string(worst) +
            " of each output's scale; " + std::to_string(zeros0) + " of " + std::to_string(n) +
            " outputs cut by the ReLU)");
}

}  // namespace

int main() {
  fake::install();
  check(cuda::deviceCount() == 1 && cuda::deviceCountError().empty(),
        "deviceCount through the runtime, no error");
  Backend& b = cuda::backend(0);
  // The last leaves the fake device failed.
  const std::pair<const char*, void (*)(Backend&)> tests[] = {
      {"fences", fences},
      {"events", events},
      {"capture", capture},
      {"outOfMemoryInCapture", outOfMemoryInCapture},
      {"streamReleasedInCapture", streamReleasedInCapture},
      {"oneHostFunctionPerRead", oneHostFunctionPerRead},
      {"uploadsInStreamOrder", uploadsInStreamOrder},
      {"batchNormRelu", batchNormRelu},
      {"faultSettlesWhenDone", faultSettlesWhenDone}};
  for (const auto& [name, test] : tests) {
    try {
      test(b);
    } catch (const std::exception& e) {
      check(false, std::string(name) + " threw: " + e.what());
    }
  }
  std::printf(failures ? "\n%d FAILURES\n" : "\nall passed\n", failures);
  std::fflush(stdout);
  std::_Exit(failures ? 1 : 0);  // the backend lives to the end of the process, by design
}
