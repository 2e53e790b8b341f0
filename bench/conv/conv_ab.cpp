// A/B timing of the CPU convolution and pooling kernels (native/cpu/conv.cpp, pool.cpp): a
// commit's copy (built into namespace sg::oldcpu by build.sh) against the working tree's, on
// the layer shapes of cnn() and its conv synthesizers, in one process, alternating the two
// per repetition. Every output of the two sides is compared bit for bit first, so a faster
// kernel that changes a result cannot go unnoticed.
//
// Usage: conv_ab [--threads N] [--reps R] [--batch B] [--filters F,...] [--only NAME]
//        [--new-only 1]  (times the working tree's kernels alone, for a profiler)
//        [--cpu-time 1]  (with --threads 1: the thread's CPU time, not the wall clock, so that
//                         time descheduled on a shared machine does not count)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <time.h>
#include <vector>

#include "../../native/core/parallel.h"
#include "../../native/cpu/conv.h"
#include "../../native/cpu/kernels.h"

namespace sg::oldcpu {
// The commit's conv.cpp calls the GEMM in its own namespace: the library's, unchanged.
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sg::cpu::sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
int64_t sgemmDepthSlice(int64_t K) { return sg::cpu::sgemmDepthSlice(K); }
void conv2dForward(const float*, const float*, const float*, float*, const Conv2dGeometry&);
void conv2dBackward(const float*, const float*, const float*, float*, float*, float*,
                    const Conv2dGeometry&);
void maxPool2dForward(const float*, float*, const Conv2dGeometry&);
void maxPool2dBackward(const float*, const float*, float*, const Conv2dGeometry&);
void avgPool2dForward(const float*, float*, const Conv2dGeometry&);
void avgPool2dBackward(const float*, float*, const Conv2dGeometry&);
}  // namespace sg::oldcpu

namespace {

using Clock = std::chrono::steady_clock;

struct Case {
  std::string name;
  sg::Conv2dGeometry g;
  bool pool;  // max and avg pooling instead of a convolution
};

std::vector<float> randomVector(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

bool cpuTime = false;  // --cpu-time 1: the calling thread's CPU time (use with --threads 1)

double now() {
  if (!cpuTime) return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

double seconds(const std::function<void()>& f) {
  const double t0 = now();
  f();
  return now() - t0;
}

bool same(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// One step's kernels of a case on one side: forward, then backward (dx, dw, db).
struct Side {
  std::function<void(const float*, const float*, const float*, float*, const sg::Conv2dGeometry&)> fwd;
  std::function<void(const float*, const float*, const float*, float*, float*, float*,
                     const sg::Conv2dGeometry&)>
      bwd;
};

}  // namespace

int main(int argc, char** argv) {
  int threads = 0, reps = 7, batch = 32;
  std::vector<int> filters = {8, 16, 32};
  std::string only;
  bool newOnly = false;  // --new-only 1: time the new side alone (for profiling it)
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--threads") threads = std::atoi(value.c_str());
    else if (flag == "--reps") reps = std::atoi(value.c_str());
    else if (flag == "--batch") batch = std::atoi(value.c_str());
    else if (flag == "--only") only = value;
    else if (flag == "--new-only") newOnly = value == "1";
    else if (flag == "--cpu-time") cpuTime = value == "1";
    else if (flag == "--filters") {
      filters.clear();
      for (size_t p = 0; p < value.size();) {
        filters.push_back(std::atoi(value.c_str() + p));
        const size_t comma = value.find(',', p);
        p = comma == std::string::npos ? value.size() : comma + 1;
      }
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (threads > 0) sg::setParallelism(threads);
  std::printf("threads %d, sgemm %s, batch %d, %d reps (median), %s, ms\n", sg::parallelism(),
              sg::cpu::sgemmIsa(), batch, reps, cpuTime ? "thread CPU time" : "wall clock");

  std::vector<Case> cases;
  for (int f : filters) {
    const std::string F = std::to_string(f);
    auto conv = [&](const std::string& name, int c, int hw, int k, int kernel, int stride, int pad) {
      cases.push_back({name + " F" + F,
                       sg::conv2dGeometry(batch, c, hw, hw, k, kernel, kernel, stride, stride, pad, pad),
                       false});
    };
    conv("cnn1 1x28", 1, 28, f, 5, 1, 2);
    conv("cnn2 Fx14", f, 14, f, 5, 1, 2);
    conv("cnn3 Fx7", f, 7, f, 5, 1, 2);
    conv("synth Fx28", f, 28, f, 5, 1, 2);
    conv("csynth F+10x28", f + 10, 28, f, 5, 1, 2);
    conv("synth Fx14", f, 14, f, 5, 1, 2);
    conv("synth Fx7", f, 7, f, 5, 1, 2);
    // Other paths: stride 2, no padding, 1x1, odd sizes.
    conv("s2 3x3 Fx15", f, 15, f, 3, 2, 1);
    conv("1x1 Fx13", f, 13, f, 1, 1, 0);
    conv("valid 3x3 3x11", 3, 11, f, 3, 1, 0);
    cases.push_back({"pool 3/2/1 Fx28", sg::conv2dGeometry(batch, f, 28, 28, f, 3, 3, 2, 2, 1, 1), true});
    cases.push_back({"pool 3/2/1 Fx14", sg::conv2dGeometry(batch, f, 14, 14, f, 3, 3, 2, 2, 1, 1), true});
    cases.push_back({"pool 2/2/0 Fx28", sg::conv2dGeometry(batch, f, 28, 28, f, 2, 2, 2, 2, 0, 0), true});
  }

  const Side oldSide{sg::oldcpu::conv2dForward, sg::oldcpu::conv2dBackward};
  const Side newSide{sg::cpu::conv2dForward, sg::cpu::conv2dBackward};
  std::mt19937 rng(7);
  bool allSame = true;
  std::printf("%-22s %10s %10s %7s %10s %10s %7s  %s\n", "case", "fwd old", "fwd new", "ratio",
              "bwd old", "bwd new", "ratio", "bits");
  for (const Case& c : cases) {
    if (!only.empty() && c.name.find(only) == std::string::npos) continue;
    const sg::Conv2dGeometry& g = c.g;
    const size_t xs = g.n * g.c * g.inPlane(), ys = g.n * g.k * g.outPlane();
    const size_t ws = c.pool ? 0 : g.k * g.patch();
    const auto x = randomVector(xs, rng), w = randomVector(ws, rng), b = randomVector(g.k, rng),
               dy = randomVector(ys, rng);
    // Outputs per side: y, dx, dw, db (pool: max y, max dx, avg y, avg dx).
    std::vector<std::vector<float>> out[2];
    for (auto& o : out) o = {std::vector<float>(ys), std::vector<float>(xs), std::vector<float>(ws),
                             std::vector<float>(g.k)};
    std::vector<double> t[2][2];
    for (int r = -1; r < reps; ++r) {
      for (int s0 = 0; s0 < 2; ++s0) {
        const int s = (r & 1) ? 1 - s0 : s0;
        if (newOnly && s == 0 && r >= 0) continue;
        auto& o = out[s];
        std::fill(o[2].begin(), o[2].end(), 0.0f);
        std::fill(o[3].begin(), o[3].end(), 0.0f);
        double tf, tb;
        if (c.pool) {
          auto mf = s ? sg::cpu::maxPool2dForward : sg::oldcpu::maxPool2dForward;
          auto mb = s ? sg::cpu::maxPool2dBackward : sg::oldcpu::maxPool2dBackward;
          auto af = s ? sg::cpu::avgPool2dForward : sg::oldcpu::avgPool2dForward;
          auto ab = s ? sg::cpu::avgPool2dBackward : sg::oldcpu::avgPool2dBackward;
          // Pools: "fwd" is max forward + backward, "bwd" avg forward + backward.
          std::vector<float> ay(ys), adx(xs);
          tf = seconds([&] {
            mf(x.data(), o[0].data(), g);
            mb(x.data(), dy.data(), o[1].data(), g);
          });
          tb = seconds([&] {
            af(x.data(), ay.data(), g);
            ab(dy.data(), adx.data(), g);
          });
          o[2] = ay;
          o[3] = adx;
        } else {
          const Side& side = s ? newSide : oldSide;
          tf = seconds([&] { side.fwd(x.data(), w.data(), b.data(), o[0].data(), g); });
          tb = seconds([&] {
            side.bwd(x.data(), w.data(), dy.data(), o[1].data(), o[2].data(), o[3].data(), g);
          });
        }
        if (r >= 0) {
          t[s][0].push_back(tf);
          t[s][1].push_back(tb);
        }
      }
    }
    const auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2] * 1e3;
    };
    bool bits = true;
    for (int i = 0; i < 4; ++i) bits = bits && same(out[0][i], out[1][i]);
    allSame = allSame && bits;
    if (newOnly) t[0][0] = t[0][1] = {1.0};
    const double f0 = median(t[0][0]), f1 = median(t[1][0]), b0 = median(t[0][1]),
                 b1 = median(t[1][1]);
    std::printf("%-22s %10.3f %10.3f %7.3f %10.3f %10.3f %7.3f  %s\n", c.name.c_str(), f0, f1,
                f1 / f0, b0, b1, b1 / b0, bits ? "identical" : "DIFFER");
    std::fflush(stdout);
  }
  std::printf("%s\n", allSame ? "all outputs bit-identical" : "SOME OUTPUTS DIFFER");
  return allSame ? 0 : 1;
}
