// Benchmark: sg::cpu::sgemm against OpenBLAS cblas_sgemm in the same process.
//
// OpenBLAS is loaded with dlopen("libopenblas.so.0") so no -dev headers or link flags are
// needed; both libraries run with the same number of threads (sg::parallelism(), or
// --threads N). Each measurement is the best of several timed batches after a warm-up,
// spread over a few rounds that alternate the two libraries, and the two results are
// compared so a broken kernel cannot post a good time.
//
// Usage: gemm_vs_openblas [--threads N] [--json FILE] [--small-n] [--cpu-time] [--linear]
// --linear times only a Linear layer's forward with a bias, y = x W^T + b, two ways (ours
// both): the GEMM then a pass adding the bias, and the GEMM with the bias in its epilogue.
// --cpu-time (with --threads 1) times the calling thread's CPU time instead of the wall
// clock: on a machine shared with other work, time spent descheduled then does not count.
// --small-n times only the products of a 10-class output layer (batch 256, 256 inputs) in all
// four transpose combinations, which is where narrow operands decide the speed.
// OpenBLAS picks its kernel from the CPU unless OPENBLAS_CORETYPE forces one; the corename
// it used is printed and written to the JSON (run once with and once without the variable
// to compare both). SYNTHGRAD_SGEMM_ISA=avx2 (or generic) measures our lower paths.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <time.h>
#include <vector>

#include "../../native/core/parallel.h"
#include "../../native/cpu/gemm.h"
#include "../../native/cpu/kernels.h"

namespace {

// The subset of the CBLAS ABI we call (LP64 OpenBLAS: int indices, enums passed as int).
constexpr int kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112;
using CblasSgemmFn = void (*)(int order, int transA, int transB, int M, int N, int K, float alpha,
                              const float* A, int lda, const float* B, int ldb, float beta,
                              float* C, int ldc);
using SetThreadsFn = void (*)(int);
using CorenameFn = char* (*)();

struct OpenBlas {
  CblasSgemmFn sgemm = nullptr;
  SetThreadsFn setThreads = nullptr;
  CorenameFn corename = nullptr;
};

OpenBlas loadOpenBlas() {
  OpenBlas lib;
  void* handle = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    std::fprintf(stderr, "cannot load libopenblas.so.0: %s\n", dlerror());
    std::exit(2);
  }
  lib.sgemm = reinterpret_cast<CblasSgemmFn>(dlsym(handle, "cblas_sgemm"));
  lib.setThreads = reinterpret_cast<SetThreadsFn>(dlsym(handle, "openblas_set_num_threads"));
  lib.corename = reinterpret_cast<CorenameFn>(dlsym(handle, "openblas_get_corename"));
  if (!lib.sgemm) {
    std::fprintf(stderr, "libopenblas.so.0 has no cblas_sgemm\n");
    std::exit(2);
  }
  return lib;
}

std::string cpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        size_t start = line.find_first_not_of(' ', colon + 1);
        return start == std::string::npos ? "" : line.substr(start);
      }
    }
  }
  return "unknown";
}

std::string jsonEscape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) >= 0x20) out += ch;
  }
  return out;
}

struct Shape {
  const char* label;
  int M, N, K;
  bool transA, transB;
};

struct Result {
  Shape shape;
  double ours, openblas;  // GFLOP/s
};

bool useCpuTime = false;

// Seconds on the wall clock, or of this thread's CPU time with --cpu-time.
double now() {
  if (useCpuTime) {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Seconds per call: best over `batches` batches of `perBatch` calls, after a warm-up.
template <typename Fn>
double bestSeconds(Fn&& fn, int perBatch, int batches) {
  fn();  // warm-up: page faults, packing buffers, thread pool start
  double best = 1e30;
  for (int b = 0; b < batches; ++b) {
    const double t0 = now();
    for (int i = 0; i < perBatch; ++i) fn();
    best = std::min(best, (now() - t0) / perBatch);
  }
  return best;
}

Result measure(const OpenBlas& blas, const Shape& s) {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> A(static_cast<size_t>(s.M) * s.K), B(static_cast<size_t>(s.K) * s.N);
  for (float& x : A) x = dist(rng);
  for (float& x : B) x = dist(rng);
  std::vector<float> ours(static_cast<size_t>(s.M) * s.N), ref(ours.size());
  const int lda = s.transA ? s.M : s.K, ldb = s.transB ? s.K : s.N, ldc = s.N;

  auto runOurs = [&] {
    sg::cpu::sgemm(s.transA, s.transB, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f,
                   ours.data(), ldc);
  };
  auto runOpenBlas = [&] {
    blas.sgemm(kCblasRowMajor, s.transA ? kCblasTrans : kCblasNoTrans,
               s.transB ? kCblasTrans : kCblasNoTrans, s.M, s.N, s.K, 1.0f, A.data(), lda,
               B.data(), ldb, 0.0f, ref.data(), ldc);
  };

  // Enough calls per batch for ~20 ms, so timer noise and one-off stalls do not dominate.
  const double flop = 2.0 * s.M * s.N * s.K;
  runOurs();
  const double t0 = now();
  runOurs();
  const double once = now() - t0;
  const int perBatch = std::max(1, static_cast<int>(0.02 / std::max(once, 1e-7)));

  // Several short rounds alternating the two, so a slow spell (other processes on this
  // shared machine, frequency changes) cannot spoil all samples of one library. OpenBLAS's
  // workers busy-wait for a while after each call, which would steal a core from our run
  // right after it; a pause lets them go to sleep first.
  const int rounds = 4, batchesPerRound = 4;
  double oursSec = 1e30, blasSec = 1e30;
  for (int round = 0; round < rounds; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    oursSec = std::min(oursSec, bestSeconds(runOurs, perBatch, batchesPerRound));
    blasSec = std::min(blasSec, bestSeconds(runOpenBlas, perBatch, batchesPerRound));
  }

  // Both results must agree to float accuracy for a K-term sum of values in [-1, 1].
  double worst = 0;
  for (size_t i = 0; i < ours.size(); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(ours[i] - ref[i])));
  if (!(worst <= 1e-6 * s.K + 1e-5)) {
    std::fprintf(stderr, "%s: results differ from OpenBLAS by %g\n", s.label, worst);
    std::exit(3);
  }
  return {s, flop / oursSec * 1e-9, flop / blasSec * 1e-9};
}

struct LinearResult {
  Shape shape;
  double unfusedUs, fusedUs;  // microseconds per call
};

// y = x W^T + b (x [M, K], W [N, K]): the GEMM then a bias pass (the loop of the addBias op)
// against the GEMM with the bias in its epilogue; the two must agree bit for bit.
LinearResult measureLinear(const Shape& s) {
  std::mt19937 rng(4321);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(s.M) * s.K), w(static_cast<size_t>(s.N) * s.K),
      bias(static_cast<size_t>(s.N));
  for (float& v : x) v = dist(rng);
  for (float& v : w) v = dist(rng);
  for (float& v : bias) v = dist(rng);
  std::vector<float> unfused(static_cast<size_t>(s.M) * s.N), fused(unfused.size());
  auto runUnfused = [&] {
    sg::cpu::sgemm(false, true, s.M, s.N, s.K, 1.0f, x.data(), s.K, w.data(), s.K, 0.0f,
                   unfused.data(), s.N);
    for (int i = 0; i < s.M; ++i) {
      float* row = unfused.data() + static_cast<size_t>(i) * s.N;
      for (int j = 0; j < s.N; ++j) row[j] += bias[j];
    }
  };
  sg::cpu::GemmEpilogue epilogue;
  epilogue.bias = bias.data();
  auto runFused = [&] {
    sg::cpu::sgemm(false, true, s.M, s.N, s.K, 1.0f, x.data(), s.K, w.data(), s.K, 0.0f,
                   fused.data(), s.N, epilogue);
  };
  runFused();
  const double t0 = now();
  runFused();
  const int perBatch = std::max(1, static_cast<int>(0.02 / std::max(now() - t0, 1e-7)));
  double unfusedSec = 1e30, fusedSec = 1e30;
  for (int round = 0; round < 6; ++round) {
    unfusedSec = std::min(unfusedSec, bestSeconds(runUnfused, perBatch, 4));
    fusedSec = std::min(fusedSec, bestSeconds(runFused, perBatch, 4));
  }
  if (std::memcmp(unfused.data(), fused.data(), fused.size() * sizeof(float)) != 0) {
    std::fprintf(stderr, "%s: the epilogue's result differs from the GEMM + bias pass\n",
                 s.label);
    std::exit(3);
  }
  return {s, unfusedSec * 1e6, fusedSec * 1e6};
}

void printHeader(const char* title) {
  std::printf("\n%s\n%-22s %5s %5s %5s %3s %10s %10s %7s\n", title, "shape", "M", "N", "K", "op",
              "ours GF/s", "OpenBLAS", "ratio");
}

void printRow(const Result& r) {
  char op[3] = {r.shape.transA ? 'T' : 'N', r.shape.transB ? 'T' : 'N', 0};
  std::printf("%-22s %5d %5d %5d %3s %10.1f %10.1f %7.3f\n", r.shape.label, r.shape.M, r.shape.N,
              r.shape.K, op, r.ours, r.openblas, r.ours / r.openblas);
  std::fflush(stdout);
}

void writeResults(std::ofstream& out, const std::vector<Result>& results, bool square) {
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    out << "    {";
    if (square) {
      out << "\"n\": " << r.shape.M;
    } else {
      out << "\"label\": \"" << jsonEscape(r.shape.label) << "\", \"m\": " << r.shape.M
          << ", \"n\": " << r.shape.N << ", \"k\": " << r.shape.K
          << ", \"transA\": " << (r.shape.transA ? "true" : "false")
          << ", \"transB\": " << (r.shape.transB ? "true" : "false");
    }
    char nums[160];
    std::snprintf(nums, sizeof nums,
                  ", \"ours_gflops\": %.2f, \"openblas_gflops\": %.2f, \"ratio\": %.4f}",
                  r.ours, r.openblas, r.ours / r.openblas);
    out << nums << (i + 1 < results.size() ? ",\n" : "\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* jsonPath = nullptr;
  int threads = 0;
  bool smallNOnly = false, linearOnly = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc) {
      jsonPath = argv[++i];
    } else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--small-n")) {
      smallNOnly = true;
    } else if (!std::strcmp(argv[i], "--linear")) {
      linearOnly = true;
    } else if (!std::strcmp(argv[i], "--cpu-time")) {
      useCpuTime = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--threads N] [--json FILE] [--small-n] [--cpu-time] [--linear]\n",
                   argv[0]);
      return 2;
    }
  }
  if (threads > 0) sg::setParallelism(threads);
  threads = sg::parallelism();
  if (useCpuTime && threads != 1) {
    std::fprintf(stderr, "--cpu-time needs --threads 1 (it times the calling thread only)\n");
    return 2;
  }

  const OpenBlas blas = loadOpenBlas();
  if (blas.setThreads) blas.setThreads(threads);
  const std::string corename = blas.corename ? blas.corename() : "unknown";
  const char* coretypeEnv = std::getenv("OPENBLAS_CORETYPE");
  const std::string machine = cpuModel();

  std::printf("machine: %s\nthreads: %d\nsgemm isa: %s\nOpenBLAS core: %s (OPENBLAS_CORETYPE=%s)\n"
              "clock: %s\n",
              machine.c_str(), threads, sg::cpu::sgemmIsa(), corename.c_str(),
              coretypeEnv ? coretypeEnv : "unset", useCpuTime ? "thread CPU time" : "wall");

  if (linearOnly) {
    const Shape linearShapes[] = {{"fwd 784->256", 256, 256, 784, false, true},
                                  {"fwd 256->256", 256, 256, 256, false, true},
                                  {"fwd 256->10", 256, 10, 256, false, true},
                                  {"fwd 1024->1024", 256, 1024, 1024, false, true}};
    std::printf("\nLinear forward y = x W^T + b\n%-16s %5s %5s %5s %14s %14s %7s\n", "shape",
                "M", "N", "K", "GEMM+bias us", "epilogue us", "ratio");
    std::vector<LinearResult> results;
    for (const Shape& s : linearShapes) {
      const LinearResult r = measureLinear(s);
      results.push_back(r);
      std::printf("%-16s %5d %5d %5d %14.2f %14.2f %7.3f\n", s.label, s.M, s.N, s.K,
                  r.unfusedUs, r.fusedUs, r.fusedUs / r.unfusedUs);
      std::fflush(stdout);
    }
    if (jsonPath) {
      std::ofstream out(jsonPath);
      out << "{\n  \"machine\": \"" << jsonEscape(machine) << "\",\n  \"threads\": " << threads
          << ",\n  \"clock\": \"" << (useCpuTime ? "thread CPU time" : "wall")
          << "\",\n  \"isa\": \"" << sg::cpu::sgemmIsa() << "\",\n  \"linear\": [\n";
      for (size_t i = 0; i < results.size(); ++i) {
        const LinearResult& r = results[i];
        char line[240];
        std::snprintf(line, sizeof line,
                      "    {\"label\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, "
                      "\"gemm_then_bias_us\": %.2f, \"epilogue_us\": %.2f, \"ratio\": %.4f}%s\n",
                      r.shape.label, r.shape.M, r.shape.N, r.shape.K, r.unfusedUs, r.fusedUs,
                      r.fusedUs / r.unfusedUs, i + 1 < results.size() ? "," : "");
        out << line;
      }
      out << "  ]\n}\n";
      std::printf("\nwrote %s\n", jsonPath);
    }
    return 0;
  }

  std::vector<Result> square;
  if (!smallNOnly) printHeader("square C = A * B");
  for (int n : {256, 512, 1024, 1536, 2048}) {
    if (smallNOnly) break;
    square.push_back(measure(blas, {"square", n, n, n, false, false}));
    printRow(square.back());
  }

  // The library's common products: batch 256, layers of 784/1024/256/10 units; forward
  // (X * W or X * W^T), input gradient (dY * W^T) and weight gradient (X^T * dY).
  const Shape trainingShapes[] = {
      {"fwd 784->256", 256, 256, 784, false, false},
      {"fwd 784->256 (W^T)", 256, 256, 784, false, true},
      {"fwd 784->1024", 256, 1024, 784, false, false},
      {"fwd 1024->1024", 256, 1024, 1024, false, false},
      {"fwd 256->256", 256, 256, 256, false, false},
      {"fwd 256->10", 256, 10, 256, false, false},
      {"fwd 256->10 (W^T)", 256, 10, 256, false, true},
      {"dX 256->784", 256, 784, 256, false, true},
      {"dX 1024->784", 256, 784, 1024, false, true},
      {"dX 10->256", 256, 256, 10, false, true},
      {"dW 784x256", 784, 256, 256, true, false},
      {"dW 1024x1024", 1024, 1024, 256, true, false},
      {"dW 256x10", 256, 10, 256, true, false},
      {"dW^T 256x784", 256, 784, 256, true, false},
  };
  // The output layer of 10 classes: y = x W^T (N = 10), dW = dy^T x (M = 10), dx = dy W
  // (K = 10), the forms the library calls marked "(lib)", each in all four transpose
  // combinations.
  const Shape smallNShapes[] = {
      {"N=10 NN", 256, 10, 256, false, false},
      {"N=10 NT fwd (lib)", 256, 10, 256, false, true},
      {"N=10 TN", 256, 10, 256, true, false},
      {"N=10 TT", 256, 10, 256, true, true},
      {"M=10 NN", 10, 256, 256, false, false},
      {"M=10 NT", 10, 256, 256, false, true},
      {"M=10 TN dW (lib)", 10, 256, 256, true, false},
      {"M=10 TT", 10, 256, 256, true, true},
      {"K=10 NN dx (lib)", 256, 256, 10, false, false},
      {"K=10 NT", 256, 256, 10, false, true},
      {"K=10 TN", 256, 256, 10, true, false},
      {"K=10 TT", 256, 256, 10, true, true},
  };
  std::vector<Shape> shapes;
  if (smallNOnly)
    shapes.assign(std::begin(smallNShapes), std::end(smallNShapes));
  else
    shapes.assign(std::begin(trainingShapes), std::end(trainingShapes));
  std::vector<Result> training;
  printHeader(smallNOnly ? "small-N shapes (10-class output layer)" : "training shapes");
  for (const Shape& s : shapes) {
    training.push_back(measure(blas, s));
    printRow(training.back());
  }

  if (jsonPath) {
    std::ofstream out(jsonPath);
    out << "{\n  \"machine\": \"" << jsonEscape(machine) << "\",\n  \"threads\": " << threads
        << ",\n  \"clock\": \"" << (useCpuTime ? "thread CPU time" : "wall")
        << "\",\n  \"isa\": \"" << sg::cpu::sgemmIsa() << "\",\n  \"openblas_corename\": \""
        << jsonEscape(corename) << "\",\n  \"openblas_coretype_env\": "
        << (coretypeEnv ? "\"" + jsonEscape(coretypeEnv) + "\"" : std::string("null"))
        << ",\n  \"sizes\": [\n";
    writeResults(out, square, true);
    out << "  ],\n  \"training_shapes\": [\n";
    writeResults(out, training, false);
    out << "  ]\n}\n";
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", jsonPath);
      return 2;
    }
    std::printf("\nwrote %s\n", jsonPath);
  }
  return 0;
}
