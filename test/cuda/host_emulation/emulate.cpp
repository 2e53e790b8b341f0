// Runs the kernel sections of cuda/*.cu on the CPU through cuda_runtime.h (this folder) and
// compares every output with the CPU kernels of native/cpu; then every launcher of
// kernels.cuh and gemm.cuh (the kernel files compiled whole, launches through SG_LAUNCH), so
// that grid sizes, tile and split-K choices, the packing of parameter groups and the launch
// limits (grid, block, shared memory, parameter bytes) are checked too. See run.sh; no GPU.
// What it proves: indexing, edge guards, barriers, reduction order and arithmetic of the
// kernels, and what the launchers decide. What it cannot: memory model, warp timing, static
// shared-memory limits, the TF32 (wmma) kernel. The runtime side (cuda_backend.cu) is tested
// on the fake runtime (fake_test.cpp).
// Tolerance 1e-5 relative (floor 1e-3), GEMMs 2 (K + 2) 2^-24 of their error scale, or bit
// for bit where the kernel mirrors the CPU's operations one by one. Bit-for-bit results rest
// on the kernels' explicit roundings (__fmul_rn, __fadd_rn, ...), which nvcc never contracts
// into FMAs; this build uses -ffp-contract=off, and nvcc contracts other a*b+c (its default
// -fmad=true), so kernels without explicit roundings are compared with a tolerance.
#include <cuda_runtime.h>  // the emulation header of this folder
#include <mma.h>           // the emulation's wmma (gemm.cu's TF32 kernel)

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common.cuh"
#include "cpu/conv.h"
#include "cpu/kernels.h"
#include "gemm.cuh"
#include "check.cuh"
#include "kernels.cuh"
#include "conv.cuh"

namespace sg::cuda {
using cpu::Activation;
namespace gemm_k {
#include "gen/gemm_kernels.inc"
}
namespace elementwise_k {
#include "gen/elementwise_kernels.inc"
}
namespace batchnorm_k {
#include "gen/batchnorm_kernels.inc"
}
namespace loss_k {
#include "gen/loss_kernels.inc"
}
namespace lstm_k {
#include "gen/lstm_kernels.inc"
}
namespace conv_k {
#include "gen/conv_kernels.inc"
}
namespace optimizer_k {
#include "gen/optimizer_kernels.inc"
}
}  // namespace sg::cuda

using namespace sg;
using namespace sg::cuda;

namespace {

int failures = 0;
std::mt19937 rng(1234);

std::vector<float> randomVec(size_t n, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// tol < 0: bit-exact (NaN == NaN).
void compare(const std::string& name, const float* got, const float* want, size_t n,
             double tol) {
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    const double g = got[i], w = want[i];
    double e;
    if (std::isnan(g) || std::isnan(w))
      e = (std::isnan(g) && std::isnan(w)) ? 0 : INFINITY;
    else if (tol < 0)
      e = (std::memcmp(&got[i], &want[i], 4) == 0) ? 0 : INFINITY;
    else
      e = std::fabs(g - w) / std::max(std::fabs(w), 1e-3);
    if (e > worst) worst = e, at = i;
  }
  const bool ok = tol < 0 ? worst == 0 : worst <= tol;
  if (!ok) {
    ++failures;
    std::printf("FAIL %-50s worst %.3g at %zu (got %.9g want %.9g)\n", name.c_str(), worst, at,
                got[at], want[at]);
  } else {
    std::printf("ok   %-50s worst %.3g\n", name.c_str(), worst);
  }
}

// As compare, relative to a per-element error scale (the magnitude of the terms that were
// rounded) instead of |want|: for results that may cancel to ~0.
void compareScaled(const std::string& name, const float* got, const float* want,
                   const std::vector<double>& scale, size_t n, double tol) {
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    const double g = got[i], w = want[i];
    const double e = std::isfinite(g) && std::isfinite(w)
                         ? std::fabs(g - w) / std::max(scale[i], 1e-30)
                         : (std::memcmp(&got[i], &want[i], 4) == 0 ? 0 : INFINITY);
    if (e > worst) worst = e, at = i;
  }
  if (!(worst <= tol)) {
    ++failures;
    std::printf("FAIL %-50s worst %.3g of its scale at %zu (got %.9g want %.9g)\n", name.c_str(),
                worst, at, got[at], want[at]);
  } else {
    std::printf("ok   %-50s worst %.3g of its scale\n", name.c_str(), worst);
  }
}

// ---- GEMM --------------------------------------------------------------------------------

// The fused epilogue (bias, then an activation) against cpu::sgemm + addBias + activation.
void gemmEpilogueCases() {
  const int M = 37, N = 45, K = 20;
  for (int act : {kNoActivation, 0, 1, 2}) {
    std::vector<float> A = randomVec(M * K), B = randomVec(N * K), bias = randomVec(N);
    std::vector<float> C(M * N, NAN), R(M * N, NAN);
    emu::launch(dim3((M + 63) / 64, (N + 63) / 64), dim3(256), [&] {
      gemm_k::sgemmKernel<64, 64, 16, false, true>(Epilogue{bias.data(), act}, M, N, K, 1.f, A.data(), K,
                                                   B.data(), K, 0.f, C.data(), N, false, false, false, K, nullptr);
    });
    cpu::sgemm(false, true, M, N, K, 1.f, A.data(), K, B.data(), K, 0.f, R.data(), N);
    cpu::addBias(R.data(), bias.data(), M, N);
    if (act != kNoActivation) cpu::activationForward(static_cast<cpu::Activation>(act), R.data(), R.data(), M * N);
    compare("sgemm epilogue bias + activation " + std::to_string(act), C.data(), R.data(), M * N, 1e-5);
  }
}

template <int BM, int BN, int BK, bool TA, bool TB>
void gemmCase(int M, int N, int K, int pad, float beta) {
  const int64_t lda = (TA ? M : K) + pad, ldb = (TB ? K : N) + pad, ldc = N + pad;
  const int64_t aRows = TA ? K : M, bRows = TB ? N : K;
  std::vector<float> A = randomVec(aRows * lda), B = randomVec(bRows * ldb);
  std::vector<float> C0 = beta == 0.f ? std::vector<float>(M * ldc, NAN) : randomVec(M * ldc);
  std::vector<float> C = C0, R = C0;
  const float alpha = 1.25f;
  const bool vecA = reinterpret_cast<uintptr_t>(A.data()) % 16 == 0 && lda % 4 == 0;
  const bool vecB = reinterpret_cast<uintptr_t>(B.data()) % 16 == 0 && ldb % 4 == 0;
  const bool vecC = reinterpret_cast<uintptr_t>(C.data()) % 16 == 0 && ldc % 4 == 0;
  emu::launch(dim3((M + BM - 1) / BM, (N + BN - 1) / BN), dim3(256), [&] {
    gemm_k::sgemmKernel<BM, BN, BK, TA, TB>(Epilogue{}, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta,
                                            C.data(), ldc, vecA, vecB, vecC, K, nullptr);
  });
  cpu::sgemm(TA, TB, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, R.data(), ldc);
  // Padding columns of C must be untouched.
  char name[128];
  std::snprintf(name, sizeof name, "sgemm<%d,%d,%d,%c%c> %dx%dx%d pad %d beta %g", BM, BN, BK,
                TA ? 'T' : 'N', TB ? 'T' : 'N', M, N, K, pad, beta);
  std::vector<float> got, want;
  for (int m = 0; m < M; ++m)
    for (int64_t n = 0; n < ldc; ++n) {
      got.push_back(C[m * ldc + n]);
      want.push_back(n < N ? R[m * ldc + n] : C0[m * ldc + n]);
    }
  compare(name, got.data(), want.data(), got.size(), 1e-5);
}

template <int BM, int BN, int BK>
void gemmAll() {
  const int sizes[][3] = {{1, 1, 1}, {5, 7, 3}, {BM, BN, BK}, {BM + 1, BN - 1, BK + 3},
                          {2 * BM + 3, 9, 37}, {3, 2 * BN + 5, 2}, {70, 90, 0}};
  for (auto& s : sizes)
    for (int pad : {0, 1})
      for (float beta : {0.f, 0.5f}) {
        gemmCase<BM, BN, BK, false, false>(s[0], s[1], s[2], pad, beta);
        gemmCase<BM, BN, BK, false, true>(s[0], s[1], s[2], pad, beta);
        gemmCase<BM, BN, BK, true, false>(s[0], s[1], s[2], pad, beta);
        gemmCase<BM, BN, BK, true, true>(s[0], s[1], s[2], pad, beta);
      }
}

// ---- element-wise --------------------------------------------------------------------------

void elementwiseTests() {
  const int64_t n = 3000;
  const dim3 grid(3), block(kBlock);  // fewer threads than items: grid-stride loops
  {
    std::vector<float> x = randomVec(n, -5, 5), y = randomVec(n), y0 = y, r = y;
    y0[7] = NAN;
    y = y0;
    emu::launch(grid, block, [&] { elementwise_k::axpbyKernel(n, 0.5f, x.data(), 0.f, y.data(), false); });
    r = y0;
    cpu::axpby(n, 0.5f, x.data(), 0.f, r.data());
    compare("axpby b=0", y.data(), r.data(), n, -1);
    y = y0;
    r = y0;
    emu::launch(grid, block, [&] { elementwise_k::axpbyKernel(n, 0.5f, x.data(), -2.f, y.data(), true); });
    cpu::axpby(n, 0.5f, x.data(), -2.f, r.data());
    compare("axpby", y.data(), r.data(), n, -1);
  }
  {
    const int64_t rows = 37, cols = 81;
    std::vector<float> y = randomVec(rows * cols), bias = randomVec(cols), r = y;
    emu::launch(grid, block, [&] { elementwise_k::addBiasKernel(y.data(), bias.data(), rows * cols, cols); });
    cpu::addBias(r.data(), bias.data(), rows, cols);
    compare("addBias", y.data(), r.data(), y.size(), -1);
  }
  for (int64_t rows : {1, 17, 300})
    for (int64_t cols : {1, 31, 33, 70}) {
      std::vector<float> dy = randomVec(rows * cols), db = randomVec(cols), r = db;
      emu::launch(dim3((cols + kColTile - 1) / kColTile), dim3(kColTile, kRowLanes),
                  [&] { elementwise_k::biasBackwardKernel(dy.data(), db.data(), rows, cols); });
      cpu::biasBackward(dy.data(), r.data(), rows, cols);
      compare("biasBackward " + std::to_string(rows) + "x" + std::to_string(cols), db.data(),
              r.data(), cols, 1e-6);
    }
  for (Activation act : {Activation::Relu, Activation::Tanh, Activation::Sigmoid}) {
    std::vector<float> x = randomVec(n, -12, 12);
    x[0] = NAN, x[1] = 0.f, x[2] = -0.f, x[3] = 100.f, x[4] = -100.f, x[5] = 1e-6f;
    std::vector<float> y(n), r(n);
    const std::string a = act == Activation::Relu ? "relu" : act == Activation::Tanh ? "tanh" : "sigmoid";
    emu::launch(grid, block, [&] {
      if (act == Activation::Relu) elementwise_k::activationForwardKernel<Activation::Relu>(x.data(), y.data(), n);
      if (act == Activation::Tanh) elementwise_k::activationForwardKernel<Activation::Tanh>(x.data(), y.data(), n);
      if (act == Activation::Sigmoid) elementwise_k::activationForwardKernel<Activation::Sigmoid>(x.data(), y.data(), n);
    });
    cpu::activationForward(act, x.data(), r.data(), n);
    compare(a + " forward", y.data(), r.data(), n, 1e-5);
    std::vector<float> dy = randomVec(n), dx(n), rdx(n);
    emu::launch(grid, block, [&] {
      if (act == Activation::Relu) elementwise_k::activationBackwardKernel<Activation::Relu>(r.data(), dy.data(), dx.data(), n);
      if (act == Activation::Tanh) elementwise_k::activationBackwardKernel<Activation::Tanh>(r.data(), dy.data(), dx.data(), n);
      if (act == Activation::Sigmoid) elementwise_k::activationBackwardKernel<Activation::Sigmoid>(r.data(), dy.data(), dx.data(), n);
    });
    cpu::activationBackward(act, r.data(), dy.data(), rdx.data(), n);
    compare(a + " backward", dx.data(), rdx.data(), n, -1);
    if (dx[5] != rdx[5]) std::printf("  y=%.9g dy=%.9g gpu=%.9g cpu=%.9g\n", r[5], dy[5], dx[5], rdx[5]);
  }
  {
    const int64_t rows = 50, classes = 7;
    for (bool bad : {false, true}) {
      std::vector<int32_t> labels(rows);
      for (int64_t r = 0; r < rows; ++r) labels[r] = static_cast<int32_t>(r % classes);
      if (bad) labels[33] = static_cast<int32_t>(classes);
      int flag = -1;
      emu::launch(dim3(1), dim3(1024), [&] {
        elementwise_k::labelCheckKernel(labels.data(), rows, classes, 0, &flag);
      });
      if (flag != (bad ? 1 : 0)) {
        ++failures;
        std::printf("FAIL labelCheck bad=%d flag=%d\n", bad, flag);
      } else {
        std::printf("ok   labelCheck bad=%d\n", bad);
      }
      std::vector<float> out(rows * classes, 42.f), r(rows * classes, 42.f);
      emu::launch(grid, block, [&] {
        elementwise_k::oneHotKernel(labels.data(), out.data(), rows, classes, &flag);
      });
      const bool cpuOk = cpu::oneHot(labels.data(), r.data(), rows, classes);
      if (cpuOk == bad) ++failures, std::printf("FAIL oneHot cpu result\n");
      compare(std::string("oneHot bad=") + (bad ? "1" : "0"), out.data(), r.data(), out.size(), -1);
    }
  }
  {
    const int64_t rows = 23, ca = 5, cb = 11;
    std::vector<float> a = randomVec(rows * ca), b = randomVec(rows * cb);
    std::vector<float> out(rows * (ca + cb)), r(rows * (ca + cb));
    emu::launch(grid, block, [&] {
      elementwise_k::concatColumnsKernel(a.data(), b.data(), out.data(), rows, ca, cb);
    });
    cpu::concatColumns(a.data(), b.data(), r.data(), rows, ca, cb);
    compare("concatColumns", out.data(), r.data(), out.size(), -1);
    std::vector<float> da(rows * ca, 9.f), db(rows * cb, 9.f), rda = da, rdb = db;
    emu::launch(grid, block, [&] {
      elementwise_k::splitColumnsKernel(out.data(), da.data(), nullptr, rows, ca, cb);
    });
    cpu::splitColumns(r.data(), rda.data(), nullptr, rows, ca, cb);
    compare("splitColumns da only", da.data(), rda.data(), da.size(), -1);
    compare("splitColumns db untouched", db.data(), rdb.data(), db.size(), -1);
    emu::launch(grid, block, [&] {
      elementwise_k::splitColumnsKernel(out.data(), da.data(), db.data(), rows, ca, cb);
    });
    cpu::splitColumns(r.data(), rda.data(), rdb.data(), rows, ca, cb);
    compare("splitColumns da", da.data(), rda.data(), da.size(), -1);
    compare("splitColumns db", db.data(), rdb.data(), db.size(), -1);
  }
}

// ---- BatchNorm ----------------------------------------------------------------------------

void batchNormTests() {
  // 1300 rows: past the kBnCachedRows x kBnLanes = 1024 rows a block keeps in registers.
  for (int64_t rows : {2, 37, 300, 1300})
    for (int64_t cols : {1, 32, 45}) {
      for (bool training : {true, false}) {
        std::vector<float> x = randomVec(rows * cols, -3, 5);
        for (auto& v : x) v += 100.f;  // |mean| >> std: exercises the hi/lo split
        std::vector<float> gamma = randomVec(cols, 0.5, 1.5), beta = randomVec(cols);
        std::vector<float> rm = randomVec(cols, 90, 110), rv = randomVec(cols, 0.5, 2);
        std::vector<float> sm(cols, 7.f), sis(cols, 7.f), y(rows * cols);
        auto rrm = rm, rrv = rv, rsm = sm, rsis = sis;
        std::vector<float> ry(rows * cols);
        emu::launch(dim3((cols + batchnorm_k::kBnCols - 1) / batchnorm_k::kBnCols),
                    dim3(batchnorm_k::kBnCols, batchnorm_k::kBnLanes), [&] {
          batchnorm_k::batchNormForwardKernel(x.data(), gamma.data(), beta.data(), y.data(),
                                              rm.data(), rv.data(), sm.data(), sis.data(), rows,
                                              cols, 0.1f, 1e-5f, training);
        });
        cpu::batchNormForward(x.data(), gamma.data(), beta.data(), ry.data(), rrm.data(),
                              rrv.data(), rsm.data(), rsis.data(), rows, cols, 0.1f, 1e-5f,
                              training);
        const std::string tag = std::string(training ? "train " : "infer ") +
                                std::to_string(rows) + "x" + std::to_string(cols);
        compare("bnForward y " + tag, y.data(), ry.data(), y.size(), 1e-5);
        compare("bnForward runningMean " + tag, rm.data(), rrm.data(), cols, 1e-6);
        compare("bnForward runningVar " + tag, rv.data(), rrv.data(), cols, 1e-6);
        compare("bnForward saveMean " + tag, sm.data(), rsm.data(), cols, 1e-6);
        compare("bnForward saveInvStd " + tag, sis.data(), rsis.data(), cols, 1e-6);
        if (!training) continue;
        std::vector<float> dy = randomVec(rows * cols), dx(rows * cols, NAN), rdx(rows * cols);
        std::vector<float> dg = randomVec(cols), db = randomVec(cols), rdg = dg, rdb = db;
        emu::launch(dim3((cols + batchnorm_k::kBnCols - 1) / batchnorm_k::kBnCols),
                    dim3(batchnorm_k::kBnCols, batchnorm_k::kBnLanes), [&] {
          batchnorm_k::batchNormBackwardKernel(x.data(), dy.data(), gamma.data(), sm.data(),
                                               sis.data(), dx.data(), dg.data(), db.data(), rows,
                                               cols);
        });
        cpu::batchNormBackward(x.data(), dy.data(), gamma.data(), rsm.data(), rsis.data(),
                               rdx.data(), rdg.data(), rdb.data(), rows, cols);
        compare("bnBackward dx " + tag, dx.data(), rdx.data(), dx.size(), 1e-5);
        compare("bnBackward dgamma " + tag, dg.data(), rdg.data(), cols, 1e-6);
        compare("bnBackward dbeta " + tag, db.data(), rdb.data(), cols, 1e-6);
      }
    }
}

// ---- losses -------------------------------------------------------------------------------

void lossTests() {
  for (int64_t rows : {1, 13, 40})
    for (int64_t classes : {1, 10, 33, 100}) {
      std::vector<float> logits = randomVec(rows * classes, -20, 20);
      logits[0] = -200.f;  // exp underflow path
      std::vector<int32_t> labels(rows);
      for (int64_t r = 0; r < rows; ++r) labels[r] = static_cast<int32_t>((r * 7) % classes);
      std::vector<float> probs(rows * classes), rprobs(rows * classes);
      std::vector<double> rowLoss(rows);
      float loss = NAN, rloss = NAN;
      int flag = -1;
      emu::launch(dim3(1), dim3(1024), [&] {
        elementwise_k::labelCheckKernel(labels.data(), rows, classes, kIgnoredLabel, &flag);
      });
      const int rpb = loss_k::kRowsPerBlock;
      emu::launch(dim3((rows + rpb - 1) / rpb), dim3(rpb * 32), [&] {
        loss_k::softmaxRowsKernel(logits.data(), labels.data(), probs.data(), rowLoss.data(),
                                  rows, classes, &flag);
      });
      emu::launch(dim3(1), dim3(loss_k::kReduceThreads), [&] {
        loss_k::meanKernel(rowLoss.data(), rows, static_cast<double>(rows), &loss, &flag);
      });
      cpu::softmaxCrossEntropyForward(logits.data(), labels.data(), rprobs.data(), &rloss, rows,
                                      classes);
      const std::string tag = std::to_string(rows) + "x" + std::to_string(classes);
      compare("softmaxCE probs " + tag, probs.data(), rprobs.data(), probs.size(), 1e-5);
      compare("softmaxCE loss " + tag, &loss, &rloss, 1, 1e-6);
      std::vector<float> dl(rows * classes), rdl(rows * classes);
      const float k = static_cast<float>(static_cast<double>(0.7f) / static_cast<double>(rows));
      emu::launch(dim3(2), dim3(kBlock), [&] {
        loss_k::softmaxCrossEntropyBackwardKernel(rprobs.data(), labels.data(), dl.data(), rows,
                                                  classes, k);
      });
      cpu::softmaxCrossEntropyBackward(rprobs.data(), labels.data(), rdl.data(), rows, classes,
                                       0.7f);
      compare("softmaxCE backward " + tag, dl.data(), rdl.data(), dl.size(), -1);
    }
  for (int64_t n : {1, 100, 4096, 4097, 20000}) {
    std::vector<float> p = randomVec(n), t = randomVec(n);
    const int64_t parts = (n + loss_k::kMseChunk - 1) / loss_k::kMseChunk;
    std::vector<double> partials(parts);
    float loss = NAN, rloss = NAN;
    emu::launch(dim3(parts), dim3(loss_k::kReduceThreads), [&] {
      loss_k::squaredErrorPartialsKernel(p.data(), t.data(), n, partials.data());
    });
    emu::launch(dim3(1), dim3(loss_k::kReduceThreads), [&] {
      loss_k::meanKernel(partials.data(), parts, static_cast<double>(n), &loss, nullptr);
    });
    cpu::mseForward(p.data(), t.data(), &rloss, n);
    compare("mse forward n=" + std::to_string(n), &loss, &rloss, 1, 1e-6);
    std::vector<float> d(n), rd(n);
    const float k = static_cast<float>(2.0 * static_cast<double>(0.3f) / static_cast<double>(n));
    emu::launch(dim3(2), dim3(kBlock), [&] {
      loss_k::mseBackwardKernel(p.data(), t.data(), d.data(), n, k);
    });
    cpu::mseBackward(p.data(), t.data(), rd.data(), n, 0.3f);
    compare("mse backward n=" + std::to_string(n), d.data(), rd.data(), n, -1);
  }
  {  // bad label: nothing written
    const int64_t rows = 9, classes = 4;
    std::vector<float> logits = randomVec(rows * classes), probs(rows * classes, 5.f);
    std::vector<int32_t> labels(rows, 1);
    labels[4] = -2;  // -1 is an ignored row (see ignoredLabelTests)
    std::vector<double> rowLoss(rows, 0.0);
    float loss = 5.f;
    int flag = -1;
    emu::launch(dim3(1), dim3(1024), [&] {
      elementwise_k::labelCheckKernel(labels.data(), rows, classes, kIgnoredLabel, &flag);
    });
    emu::launch(dim3(2), dim3(256), [&] {
      loss_k::softmaxRowsKernel(logits.data(), labels.data(), probs.data(), rowLoss.data(), rows,
                                classes, &flag);
    });
    emu::launch(dim3(1), dim3(loss_k::kReduceThreads), [&] {
      loss_k::meanKernel(rowLoss.data(), rows, static_cast<double>(rows), &loss, &flag);
    });
    const bool untouched = flag == 1 && loss == 5.f &&
                           std::all_of(probs.begin(), probs.end(), [](float v) { return v == 5.f; });
    if (!untouched) ++failures;
    std::printf("%s softmaxCE with a bad label writes nothing\n", untouched ? "ok  " : "FAIL");
  }
}

// Rows labelled -1 (kIgnoredLabel): the label check lets them through for the softmax CE only,
// their loss is 0 and their gradient row 0, as on the CPU; the mean still divides by all rows.
void ignoredLabelTests() {
  const int64_t rows = 21, classes = 6;
  std::vector<float> logits = randomVec(rows * classes, -4, 4);
  std::vector<int32_t> labels(rows);
  for (int64_t r = 0; r < rows; ++r) labels[r] = r % 3 == 1 ? -1 : static_cast<int32_t>(r % classes);
  int flag = -1, oneHotFlag = -1;
  emu::launch(dim3(1), dim3(1024), [&] {
    elementwise_k::labelCheckKernel(labels.data(), rows, classes, kIgnoredLabel, &flag);
  });
  emu::launch(dim3(1), dim3(1024), [&] {
    elementwise_k::labelCheckKernel(labels.data(), rows, classes, 0, &oneHotFlag);
  });
  const bool flags = flag == 0 && oneHotFlag == 1;
  if (!flags) ++failures;
  std::printf("%s labelCheck: -1 passes for the softmax CE (flag %d), not for oneHot (flag %d)\n",
              flags ? "ok  " : "FAIL", flag, oneHotFlag);
  std::vector<float> probs(rows * classes), rprobs(rows * classes);
  std::vector<double> rowLoss(rows, 99.0);
  float loss = NAN, rloss = NAN;
  emu::launch(dim3((rows + loss_k::kRowsPerBlock - 1) / loss_k::kRowsPerBlock),
              dim3(loss_k::kRowsPerBlock * 32), [&] {
    loss_k::softmaxRowsKernel(logits.data(), labels.data(), probs.data(), rowLoss.data(), rows,
                              classes, &flag);
  });
  emu::launch(dim3(1), dim3(loss_k::kReduceThreads), [&] {
    loss_k::meanKernel(rowLoss.data(), rows, static_cast<double>(rows), &loss, &flag);
  });
  const bool cpuOk = cpu::softmaxCrossEntropyForward(logits.data(), labels.data(), rprobs.data(),
                                                     &rloss, rows, classes);
  if (!cpuOk) ++failures, std::printf("FAIL cpu softmaxCE refused label -1\n");
  compare("softmaxCE ignored rows: probs", probs.data(), rprobs.data(), probs.size(), 1e-5);
  compare("softmaxCE ignored rows: loss", &loss, &rloss, 1, 1e-6);
  bool zeroRows = true;
  for (int64_t r = 1; r < rows; r += 3) zeroRows &= rowLoss[r] == 0.0;
  if (!zeroRows) ++failures;
  std::printf("%s softmaxCE ignored rows: row losses 0\n", zeroRows ? "ok  " : "FAIL");
  std::vector<float> dl(rows * classes, NAN), rdl(rows * classes, NAN);
  const float k = static_cast<float>(static_cast<double>(0.7f) / static_cast<double>(rows));
  emu::launch(dim3(2), dim3(kBlock), [&] {
    loss_k::softmaxCrossEntropyBackwardKernel(rprobs.data(), labels.data(), dl.data(), rows,
                                              classes, k);
  });
  cpu::softmaxCrossEntropyBackward(rprobs.data(), labels.data(), rdl.data(), rows, classes, 0.7f);
  compare("softmaxCE ignored rows: backward", dl.data(), rdl.data(), dl.size(), -1);
  bool zeroGrad = true;
  for (int64_t r = 1; r < rows; r += 3)
    for (int64_t c = 0; c < classes; ++c) zeroGrad &= dl[r * classes + c] == 0.0f;
  if (!zeroGrad) ++failures;
  std::printf("%s softmaxCE ignored rows: gradient rows 0\n", zeroGrad ? "ok  " : "FAIL");
  {  // through the launchers; then no classes and every row ignored: loss 0, as the CPU
    std::vector<double> scratch(rows, 99.0);
    int f = -1;
    float l = NAN;
    launchLabelCheck(nullptr, labels.data(), rows, classes, true, &f);
    launchSoftmaxCrossEntropyForward(nullptr, logits.data(), labels.data(), probs.data(), &l, rows,
                                     classes, scratch.data(), &f);
    compare("launchSoftmaxCrossEntropyForward ignored rows: loss", &l, &rloss, 1, 1e-6);
    std::vector<int32_t> none(4, -1);
    float empty = NAN, rempty = NAN;
    launchLabelCheck(nullptr, none.data(), 4, 0, true, &f);
    launchSoftmaxCrossEntropyForward(nullptr, nullptr, none.data(), nullptr, &empty, 4, 0,
                                     scratch.data(), &f);
    const bool cpuOk2 = cpu::softmaxCrossEntropyForward(nullptr, none.data(), nullptr, &rempty, 4, 0);
    const bool same = f == 0 && cpuOk2 && empty == 0.0f && rempty == 0.0f;
    if (!same) ++failures;
    std::printf("%s softmaxCE with 0 classes and every row ignored: loss 0 (got %g, cpu %g)\n",
                same ? "ok  " : "FAIL", empty, rempty);
  }
}

// Sigmoid cross-entropy: probs to expf's few ulp, the loss to double rounding (the warp adds a
// row's terms in another order than the CPU), the backward bit for bit.
void sigmoidCrossEntropyTests() {
  for (int64_t rows : {1, 13, 40})
    for (int64_t cols : {1, 8, 33, 100}) {
      std::vector<float> logits = randomVec(rows * cols, -20, 20);
      logits[0] = -200.f;  // exp underflow path
      std::vector<float> targets = randomVec(rows * cols, 0, 1);
      std::vector<float> probs(rows * cols, NAN), rprobs(rows * cols, NAN);
      std::vector<double> rowLoss(rows, NAN);
      float loss = NAN, rloss = NAN;
      const int rpb = loss_k::kRowsPerBlock;
      emu::launch(dim3((rows + rpb - 1) / rpb), dim3(rpb * 32), [&] {
        loss_k::sigmoidRowsKernel(logits.data(), targets.data(), probs.data(), rowLoss.data(),
                                  rows, cols);
      });
      emu::launch(dim3(1), dim3(loss_k::kReduceThreads), [&] {
        loss_k::meanKernel(rowLoss.data(), rows, static_cast<double>(rows), &loss, nullptr);
      });
      cpu::sigmoidCrossEntropyForward(logits.data(), targets.data(), rprobs.data(), &rloss, rows,
                                      cols);
      const std::string tag = std::to_string(rows) + "x" + std::to_string(cols);
      compare("sigmoidCE probs " + tag, probs.data(), rprobs.data(), probs.size(), 1e-5);
      compare("sigmoidCE loss " + tag, &loss, &rloss, 1, 1e-6);
      std::vector<float> d(rows * cols, NAN), rd(rows * cols, NAN);
      emu::launch(dim3(2), dim3(kBlock), [&] {
        loss_k::sigmoidCrossEntropyBackwardKernel(rprobs.data(), targets.data(), d.data(),
                                                  rows * cols, 0.3f);
      });
      cpu::sigmoidCrossEntropyBackward(rprobs.data(), targets.data(), rd.data(), rows * cols, 0.3f);
      compare("sigmoidCE backward " + tag, d.data(), rd.data(), d.size(), -1);
    }
}

// ---- LSTM cell ----------------------------------------------------------------------------

// Error scales of the LSTM cell's outputs, from the CPU's values: the magnitude of the terms
// each output rounds (c = f cPrev + i g cancels; 1 - t is rounded at the scale of 1), so that
// a result that cancels to ~0 is judged on the absolute error its inputs allow. tanhf/expf
// differ from the CPU's polynomials by a few ulp: a few u of these scales, far below 1e-5;
// a wrong term or index is off by >= 1e-2 of them.
struct LstmScales {
  std::vector<double> c, h, dgates, dcPrev;
};

LstmScales lstmScales(const std::vector<float>& act, const std::vector<float>& cPrev,
                      const std::vector<float>& c, const std::vector<float>& h,
                      const std::vector<float>& dh, const float* dc, int64_t rows,
                      int64_t hidden) {
  const int64_t H = hidden, n = rows * hidden;
  LstmScales s{std::vector<double>(n), std::vector<double>(n), std::vector<double>(4 * n),
               std::vector<double>(n)};
  for (int64_t e = 0; e < n; ++e) {
    const int64_t a = (e / H) * 4 * H + e % H;
    const double i = act[a], f = act[a + H], g = act[a + 2 * H], o = act[a + 3 * H];
    const double t = std::fabs(std::tanh(static_cast<double>(c[e])));
    s.c[e] = std::fabs(f * cPrev[e]) + std::fabs(i * g);
    s.h[e] = std::fabs(h[e]) + s.c[e];
    const double dct = (dc ? std::fabs(dc[e]) : 0.0) + std::fabs(dh[e] * o) * (1.0 + t);
    s.dgates[a] = dct * std::fabs(g * i);
    s.dgates[a + H] = dct * std::fabs(cPrev[e] * f);
    s.dgates[a + 2 * H] = dct * std::fabs(i) * (1.0 + std::fabs(g));
    s.dgates[a + 3 * H] = std::fabs(dh[e]) * t * std::fabs(o);
    s.dcPrev[e] = dct * std::fabs(f);
  }
  return s;
}

// Forward and backward against the CPU kernels; grids smaller than the work (grid-stride
// loops), with and without dc, and dcPrev in place over dc; the backward gets the same inputs
// (the CPU forward's) on both sides.
void lstmTests() {
  for (int64_t rows : {1, 7, 64})
    for (int64_t hidden : {1, 5, 33}) {
      const int64_t n = rows * hidden, n4 = 4 * n;
      std::vector<float> gates = randomVec(n4, -4, 4), cPrev = randomVec(n, -2, 2);
      std::vector<float> rgates = gates, c(n, NAN), h(n, NAN), rc(n, NAN), rh(n, NAN);
      emu::launch(dim3(2), dim3(kBlock), [&] {
        lstm_k::lstmCellForwardKernel(gates.data(), cPrev.data(), c.data(), h.data(), rows,
                                      hidden);
      });
      cpu::lstmCellForward(rgates.data(), cPrev.data(), rc.data(), rh.data(), rows, hidden);
      const std::string tag = std::to_string(rows) + "x" + std::to_string(hidden);
      std::vector<float> dh = randomVec(n), dc = randomVec(n);
      const LstmScales fs = lstmScales(rgates, cPrev, rc, rh, dh, nullptr, rows, hidden);
      compare("lstm forward gates " + tag, gates.data(), rgates.data(), n4, 1e-5);
      compareScaled("lstm forward c " + tag, c.data(), rc.data(), fs.c, n, 1e-5);
      compareScaled("lstm forward h " + tag, h.data(), rh.data(), fs.h, n, 1e-5);
      for (int variant = 0; variant < 3; ++variant) {  // dc null, dc given, dcPrev == dc
        std::vector<float> dg(n4, NAN), rdg(n4, NAN), dcp(n, NAN), rdcp(n, NAN);
        std::vector<float> dcIn = dc, rdcIn = dc;
        const float* dcArg = variant == 0 ? nullptr : dcIn.data();
        float* dcpArg = variant == 2 ? dcIn.data() : dcp.data();
        emu::launch(dim3(3), dim3(kBlock), [&] {
          lstm_k::lstmCellBackwardKernel(rgates.data(), cPrev.data(), rc.data(), dh.data(), dcArg,
                                         dg.data(), dcpArg, rows, hidden);
        });
        const float* rdcArg = variant == 0 ? nullptr : rdcIn.data();
        float* rdcpArg = variant == 2 ? rdcIn.data() : rdcp.data();
        cpu::lstmCellBackward(rgates.data(), cPrev.data(), rc.data(), dh.data(), rdcArg,
                              rdg.data(), rdcpArg, rows, hidden);
        const std::string v = variant == 0 ? " (no dc) " : variant == 1 ? " (dc) " : " (dcPrev = dc) ";
        const LstmScales bs = lstmScales(rgates, cPrev, rc, rh, dh, variant == 0 ? nullptr : dc.data(),
                                         rows, hidden);
        compareScaled("lstm backward dgates" + v + tag, dg.data(), rdg.data(), bs.dgates, n4, 1e-5);
        compareScaled("lstm backward dcPrev" + v + tag, dcpArg, rdcpArg, bs.dcPrev, n, 1e-5);
      }
    }
}

// ---- convolution and pooling (conv.cu) -----------------------------------------------------

std::vector<float> absOf(const std::vector<float>& v) {
  std::vector<float> a(v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = std::fabs(v[i]);
  return a;
}

std::vector<double> toDouble(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// The kernels directly (grids smaller than the work: grid-stride loops and block loops) and
// through the launchers, against cpu::conv2dForward / conv2dBackward. The CPU sums through
// im2col + sgemm, the kernels directly: each result is judged relative to the sum of the
// magnitudes of its terms, which is the same computation on |x|, |w|, |dy| (1e-5).
void convTests() {
  const Conv2dGeometry cases[] = {
      conv2dGeometry(1, 1, 5, 5, 1, 3, 3, 1, 1, 1, 1),   // 'same' 3x3
      conv2dGeometry(2, 3, 7, 9, 4, 3, 3, 2, 2, 1, 1),   // stride 2
      conv2dGeometry(3, 8, 6, 5, 3, 5, 5, 1, 1, 2, 2),   // 'same' 5x5
      conv2dGeometry(2, 8, 9, 11, 5, 3, 2, 2, 3, 0, 1),  // non-square everything
      conv2dGeometry(2, 3, 4, 6, 2, 4, 6, 1, 1, 0, 0),   // the kernel covers the image
  };
  for (const Conv2dGeometry& g : cases) {
    const std::string tag = " n" + std::to_string(g.n) + " c" + std::to_string(g.c) + " " +
                            std::to_string(g.h) + "x" + std::to_string(g.w) + " k" +
                            std::to_string(g.k) + " " + std::to_string(g.kh) + "x" +
                            std::to_string(g.kw) + " s" + std::to_string(g.sh) + "," +
                            std::to_string(g.sw) + " p" + std::to_string(g.ph) + "," +
                            std::to_string(g.pw);
    const size_t nx = g.n * g.c * g.h * g.w, nw = g.k * g.patch(), ny = g.n * g.k * g.outPlane();
    std::vector<float> x = randomVec(nx), w = randomVec(nw), b = randomVec(g.k), dy = randomVec(ny);
    std::vector<float> ax = absOf(x), aw = absOf(w), ab = absOf(b), ady = absOf(dy);
    // forward: the kernel on a 3-block grid, then the launcher
    std::vector<float> y(ny, NAN), ry(ny, NAN), sy(ny, NAN);
    emu::launch(dim3(3), dim3(kBlock), [&] {
      conv_k::conv2dForwardKernel(x.data(), w.data(), b.data(), y.data(), g);
    });
    cpu::conv2dForward(x.data(), w.data(), b.data(), ry.data(), g);
    cpu::conv2dForward(ax.data(), aw.data(), ab.data(), sy.data(), g);
    compareScaled("conv2dForwardKernel" + tag, y.data(), ry.data(), toDouble(sy), ny, 1e-5);
    std::vector<float> y2(ny, NAN);
    launchConv2dForward(nullptr, x.data(), w.data(), nullptr, y2.data(), g);
    cpu::conv2dForward(x.data(), w.data(), nullptr, ry.data(), g);
    compareScaled("launchConv2dForward (no bias)" + tag, y2.data(), ry.data(), toDouble(sy), ny, 1e-5);
    // backward: dx overwritten, dw and db accumulated onto random values
    std::vector<float> dx(nx, NAN), rdx(nx, NAN), sdx(nx, NAN);
    std::vector<float> dw0 = randomVec(nw), db0 = randomVec(g.k);
    std::vector<float> dw = dw0, rdw = dw0, sdw = absOf(dw0), db = db0, rdb = db0, sdb = absOf(db0);
    launchConv2dBackward(nullptr, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), g);
    cpu::conv2dBackward(x.data(), w.data(), dy.data(), rdx.data(), rdw.data(), rdb.data(), g);
    cpu::conv2dBackward(ax.data(), aw.data(), ady.data(), sdx.data(), sdw.data(), sdb.data(), g);
    std::vector<double> sdxd = toDouble(sdx);
    for (double& v : sdxd) v = std::max(v, 1e-30);  // elements no window reaches: 0 on both sides
    compareScaled("launchConv2dBackward dx" + tag, dx.data(), rdx.data(), sdxd, nx, 1e-5);
    compareScaled("launchConv2dBackward dw" + tag, dw.data(), rdw.data(), toDouble(sdw), nw, 1e-5);
    compareScaled("launchConv2dBackward db" + tag, db.data(), rdb.data(), toDouble(sdb), g.k, 1e-5);
    // the kernels directly, small grids; dx alone through the launcher with dw, db null
    std::vector<float> dx2(nx, NAN), dw2 = dw0, db2 = db0;
    emu::launch(dim3(2), dim3(kBlock), [&] {
      conv_k::conv2dBackwardDataKernel(w.data(), dy.data(), dx2.data(), g);
    });
    emu::launch(dim3(3), dim3(conv_k::kConvReduceBlock), [&] {
      conv_k::conv2dBackwardFilterKernel(x.data(), dy.data(), dw2.data(), g);
    });
    emu::launch(dim3(1), dim3(conv_k::kConvReduceBlock), [&] {
      conv_k::conv2dBackwardBiasKernel(dy.data(), db2.data(), g);
    });
    compareScaled("conv2dBackwardDataKernel" + tag, dx2.data(), rdx.data(), sdxd, nx, 1e-5);
    compareScaled("conv2dBackwardFilterKernel" + tag, dw2.data(), rdw.data(), toDouble(sdw), nw, 1e-5);
    compareScaled("conv2dBackwardBiasKernel" + tag, db2.data(), rdb.data(), toDouble(sdb), g.k, 1e-5);
    std::vector<float> dx3(nx, NAN);
    launchConv2dBackward(nullptr, x.data(), w.data(), dy.data(), dx3.data(), nullptr, nullptr, g);
    compare("launchConv2dBackward dx alone" + tag, dx3.data(), dx.data(), nx, -1);
  }

  // Pools: bit for bit (same terms, same order, explicit roundings), ties and NaNs included.
  const Conv2dGeometry pools[] = {
      conv2dGeometry(1, 2, 6, 6, 2, 2, 2, 2, 2, 0, 0),
      conv2dGeometry(2, 3, 7, 9, 3, 3, 3, 2, 2, 1, 1),
      conv2dGeometry(2, 3, 5, 6, 3, 3, 3, 1, 1, 1, 1),
      conv2dGeometry(1, 2, 9, 4, 2, 3, 2, 2, 1, 1, 1),
  };
  for (const Conv2dGeometry& g : pools)
    for (bool isMax : {true, false}) {
      const std::string tag = std::string(isMax ? " max " : " avg ") + std::to_string(g.h) + "x" +
                              std::to_string(g.w) + " k" + std::to_string(g.kh) + "x" +
                              std::to_string(g.kw) + " s" + std::to_string(g.sh) + " p" +
                              std::to_string(g.ph);
      const size_t nx = g.n * g.c * g.h * g.w, ny = g.n * g.c * g.outPlane();
      std::vector<float> x = randomVec(nx), dy = randomVec(ny);
      for (size_t i = 0; i < nx; i += 7) x[i] = 0.5f;  // ties
      x[nx / 2] = NAN;
      std::vector<float> y(ny, NAN), ry(ny, NAN), dx(nx, NAN), rdx(nx, NAN);
      emu::launch(dim3(2), dim3(kBlock), [&] {
        conv_k::pool2dForwardKernel(x.data(), y.data(), g, isMax);
      });
      emu::launch(dim3(2), dim3(kBlock), [&] {
        conv_k::pool2dBackwardKernel(x.data(), dy.data(), dx.data(), g, isMax);
      });
      if (isMax) {
        cpu::maxPool2dForward(x.data(), ry.data(), g);
        cpu::maxPool2dBackward(x.data(), dy.data(), rdx.data(), g);
      } else {
        cpu::avgPool2dForward(x.data(), ry.data(), g);
        cpu::avgPool2dBackward(dy.data(), rdx.data(), g);
      }
      compare("pool2dForwardKernel" + tag, y.data(), ry.data(), ny, -1);
      compare("pool2dBackwardKernel" + tag, dx.data(), rdx.data(), nx, -1);
      std::vector<float> y2(ny, NAN), dx2(nx, NAN);
      launchPool2dForward(nullptr, x.data(), y2.data(), g, isMax);
      launchPool2dBackward(nullptr, isMax ? x.data() : nullptr, dy.data(), dx2.data(), g, isMax);
      compare("launchPool2dForward" + tag, y2.data(), ry.data(), ny, -1);
      compare("launchPool2dBackward" + tag, dx2.data(), rdx.data(), nx, -1);
    }

  for (int64_t dims : {int64_t(1), int64_t(37)}) {  // swapLastAxes
    const int64_t B = 3, M = dims, N = dims + 5;
    std::vector<float> x = randomVec(B * M * N), y(B * M * N, NAN), ry(B * M * N, NAN);
    launchSwapLastAxes(nullptr, x.data(), y.data(), B, M, N);
    cpu::swapLastAxes(x.data(), ry.data(), B, M, N);
    compare("launchSwapLastAxes " + std::to_string(M) + "x" + std::to_string(N), y.data(), ry.data(),
            y.size(), -1);
  }
  {  // empty batches: nothing launched
    emu::launches.clear();
    const Conv2dGeometry g = conv2dGeometry(0, 2, 5, 5, 3, 3, 3, 1, 1, 1, 1);
    launchConv2dForward(nullptr, nullptr, nullptr, nullptr, nullptr, g);
    launchConv2dBackward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, g);
    launchPool2dForward(nullptr, nullptr, nullptr, g, true);
    launchPool2dBackward(nullptr, nullptr, nullptr, nullptr, g, false);
    launchSwapLastAxes(nullptr, nullptr, nullptr, 0, 4, 4);
    const bool none = emu::launches.empty();
    if (!none) ++failures;
    std::printf("%s conv launchers launch nothing for empty inputs\n", none ? "ok  " : "FAIL");
  }
}

// ---- optimizers ---------------------------------------------------------------------------

// A parameter group through the real launchers (launchSgdStepGroup / launchAdamStepGroup):
// 40 tensors, some empty, one spanning several chunks, one at an address that is not 16-byte
// aligned and sizes that are not multiples of 4 (the element-by-element path), so the packing
// into launches of 32 tensors is exercised. Every tensor must get exactly one step, bit for
// bit the CPU's, and its gradient must come back zeroed.
void groupLaunchTests() {
  std::vector<int64_t> sizes;
  for (int t = 0; t < 40; ++t)
    sizes.push_back(t % 9 == 4 ? 0 : t == 6 ? 2 * kGroupChunk + 77 : 1 + (t * 977) % 2600);
  int64_t nonEmpty = 0;
  for (int64_t n : sizes) nonEmpty += n > 0;
  for (int kind = 0; kind < 3; ++kind) {  // 0: SGD, 1: SGD with momentum, 2: Adam
    const bool adam = kind == 2, withState0 = kind != 0;
    // One spare float in front of every buffer: tensor 11 starts 4 bytes in (unaligned).
    std::vector<std::vector<float>> p, g, s0, s1;
    for (int64_t n : sizes) {
      p.push_back(randomVec(n + 1));
      g.push_back(randomVec(n + 1));
      s0.push_back(randomVec(n + 1));
      s1.push_back(randomVec(n + 1, 0, 1));
    }
    auto rp = p, rg = g, rs0 = s0, rs1 = s1;
    std::vector<GroupTensor> group;
    for (size_t t = 0; t < sizes.size(); ++t) {
      const int o = t == 11 ? 1 : 0;
      group.push_back({p[t].data() + o, g[t].data() + o, withState0 ? s0[t].data() + o : nullptr,
                       adam ? s1[t].data() + o : nullptr, sizes[t]});
    }
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.01f;
    const float momentum = kind == 1 ? 0.9f : 0.f;
    const int64_t step = 3;
    const cpu::AdamScalars sc = cpu::adamScalars(lr, b1, b2, step);
    const float hyper[2] = {adam ? sc.stepSize : lr, sc.bc2Sqrt};
    emu::launches.clear();
    if (adam)
      launchAdamStepGroup(nullptr, group, hyper, b1, b2, eps, wd);
    else
      launchSgdStepGroup(nullptr, group, hyper, momentum, wd);
    const std::string tag = adam ? "adam" : kind == 1 ? "sgd momentum" : "sgd";
    const size_t wantLaunches = static_cast<size_t>((nonEmpty + kGroupTensors - 1) / kGroupTensors);
    const bool launchesOk = emu::launches.size() == wantLaunches;
    if (!launchesOk) ++failures;
    std::printf("%s %s group: %zu launches for %lld non-empty tensors (want %zu)\n",
                launchesOk ? "ok  " : "FAIL", tag.c_str(), emu::launches.size(),
                static_cast<long long>(nonEmpty), wantLaunches);
    int worstTensor = -1;
    for (size_t t = 0; t < sizes.size(); ++t) {
      const int o = t == 11 ? 1 : 0;
      const int64_t n = sizes[t];
      if (adam)
        cpu::adamStep(rp[t].data() + o, rg[t].data() + o, rs0[t].data() + o, rs1[t].data() + o, n,
                      lr, b1, b2, eps, wd, step);
      else
        cpu::sgdStep(rp[t].data() + o, rg[t].data() + o, withState0 ? rs0[t].data() + o : nullptr,
                     n, lr, momentum, wd);
      std::fill(rg[t].begin() + o, rg[t].begin() + o + n, 0.f);
      const bool same = p[t] == rp[t] && g[t] == rg[t] && s0[t] == rs0[t] && s1[t] == rs1[t];
      if (!same && worstTensor < 0) worstTensor = static_cast<int>(t);
    }
    if (worstTensor >= 0) ++failures;
    std::printf("%s %s group of 40 tensors: one step each, bit for bit the CPU's, gradients "
                "zeroed%s\n", worstTensor < 0 ? "ok  " : "FAIL", tag.c_str(),
                worstTensor < 0 ? "" : (" (first mismatch: tensor " + std::to_string(worstTensor) +
                                        ", n = " + std::to_string(sizes[worstTensor]) + ")").c_str());
  }
  std::vector<float> y(3, 0.f);
  launchWriteScalars(nullptr, y.data(), {1.f, 2.f});
  const bool wrote = y[0] == 1.f && y[1] == 2.f && y[2] == 0.f;
  if (!wrote) ++failures;
  std::printf("%s writeScalars writes n values\n", wrote ? "ok  " : "FAIL");
}

void optimizerTests() {
  const int64_t n = 2500;
  for (float momentum : {0.f, 0.9f}) {
    std::vector<float> p = randomVec(n), g = randomVec(n), v = randomVec(n);
    auto rp = p, rv = v;
    emu::launch(dim3(3), dim3(kBlock), [&] {
      optimizer_k::sgdKernel(p.data(), g.data(), momentum != 0.f ? v.data() : nullptr, n, 0.01f,
                             momentum, 1e-4f, momentum != 0.f);
    });
    cpu::sgdStep(rp.data(), g.data(), rv.data(), n, 0.01f, momentum, 1e-4f);
    compare("sgd param momentum " + std::to_string(momentum), p.data(), rp.data(), n, -1);
    compare("sgd velocity momentum " + std::to_string(momentum), v.data(), rv.data(), n, -1);
  }
  for (int64_t step : {1, 2, 1000}) {
    std::vector<float> p = randomVec(n), g = randomVec(n), m = randomVec(n), v = randomVec(n, 0, 1);
    auto rp = p, rm = m, rv = v;
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.01f;
    const double t = static_cast<double>(step);
    const float stepSize = static_cast<float>(static_cast<double>(lr) / (1.0 - std::pow(static_cast<double>(b1), t)));
    const float bc2Sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(b2), t)));
    emu::launch(dim3(3), dim3(kBlock), [&] {
      optimizer_k::adamKernel(p.data(), g.data(), m.data(), v.data(), n, b1, b2, 1.0f - b1,
                              1.0f - b2, eps, wd, stepSize, bc2Sqrt);
    });
    cpu::adamStep(rp.data(), g.data(), rm.data(), rv.data(), n, lr, b1, b2, eps, wd, step);
    compare("adam param step " + std::to_string(step), p.data(), rp.data(), n, -1);
    compare("adam m step " + std::to_string(step), m.data(), rm.data(), n, -1);
    compare("adam v step " + std::to_string(step), v.data(), rv.data(), n, -1);
  }
  groupLaunchTests();
}

// ---- the launchers --------------------------------------------------------------------------
//
// Every launcher of kernels.cuh and gemm.cuh once, through SG_LAUNCH (grid sizes, tile choice,
// guards for empty inputs), against the CPU kernels. The kernel tests above pick their own
// grids; these use the launchers' own.

void launcherTests() {
  const int numSMs = 132;  // an H100/H200
  {  // GEMM: both tile sizes (small and large M x N for 132 SMs), all transposes, epilogue
    // 256^3 and 130x70x257: split K (16 and 6 tiles of 64 x 64 on 132 SMs; the latter with
    // the epilogue in the reduction); 1537x1543x8: the 128 x 128 tile (13 x 13 >= 132).
    const int shapes[][3] = {{256, 256, 256}, {130, 70, 257}, {37, 45, 20}, {1, 300, 64},
                             {300, 1, 50},    {64, 64, 0},    {1537, 1543, 8}};
    for (auto& sh : shapes)
      for (int tr = 0; tr < 4; ++tr) {
        const int M = sh[0], N = sh[1], K = sh[2];
        const bool ta = tr & 1, tb = tr & 2;
        std::vector<float> A = randomVec(int64_t(M) * K), B = randomVec(int64_t(N) * K);
        std::vector<float> bias = randomVec(N), C = randomVec(int64_t(M) * N), R = C, C0 = C;
        const bool epilogue = M == 37 || M == 130;
        std::vector<float> ws(sgemmWorkspaceFloats(M, N, K, numSMs, false), NAN);
        emu::launches.clear();
        launchSgemm(nullptr, ta, tb, M, N, K, 0.75f, A.data(), ta ? M : K, B.data(), tb ? K : N,
                    epilogue ? 0.f : 0.5f, C.data(), N, numSMs, false,
                    epilogue ? bias.data() : nullptr, epilogue ? 1 : -1,
                    ws.empty() ? nullptr : ws.data());
        if (M == 256 || M == 130) {  // split: at least 4 times the blocks of the 64 x 64 grid
          const dim3 g = emu::launches.empty() ? dim3(0, 0, 0) : emu::launches[0].grid;
          const unsigned tiles = ((M + 63) / 64) * ((N + 63) / 64);
          const bool covers = g.z > 1 && g.x * g.y * g.z >= 4 * tiles;
          if (!covers) ++failures;
          std::printf("%s launchSgemm %dx%dx%d splits K: %u blocks (%u unsplit) on %d SMs\n",
                      covers ? "ok  " : "FAIL", M, N, K, g.x * g.y * g.z, tiles, numSMs);
        }
        cpu::sgemm(ta, tb, M, N, K, 0.75f, A.data(), ta ? M : K, B.data(), tb ? K : N,
                   epilogue ? 0.f : 0.5f, R.data(), N);
        if (epilogue) {
          cpu::addBias(R.data(), bias.data(), M, N);
          cpu::activationForward(Activation::Tanh, R.data(), R.data(), int64_t(M) * N);
        }
        std::string grids;
        for (auto& l : emu::launches)
          grids += " " + std::to_string(l.grid.x) + "x" + std::to_string(l.grid.y) + "x" +
                   std::to_string(l.grid.z);
        char name[160];
        std::snprintf(name, sizeof name, "launchSgemm %dx%dx%d %c%c grid%s", M, N, K,
                      ta ? 'T' : 'N', tb ? 'T' : 'N', grids.c_str());
        // Both sum K products in different orders (the split adds slices): the error bound
        // 2 (K + 2) u of |alpha| sum |a b| + |beta c| (u = 2^-24), as bench/gpu_check.ts. The
        // activation (tanh) only shrinks differences.
        std::vector<float> absA(A.size()), absB(B.size()), scale(C.size());
        for (size_t i = 0; i < A.size(); ++i) absA[i] = std::fabs(A[i]);
        for (size_t i = 0; i < B.size(); ++i) absB[i] = std::fabs(B[i]);
        cpu::sgemm(ta, tb, M, N, K, 0.75f, absA.data(), ta ? M : K, absB.data(), tb ? K : N, 0.f,
                   scale.data(), N);
        double worst = 0;
        for (size_t i = 0; i < C.size(); ++i) {
          const double s = scale[i] + (epilogue ? 0.0 : 0.5 * std::fabs(C0[i])) + 1e-30;
          const double e = std::isnan(C[i]) ? INFINITY : std::fabs(double(C[i]) - R[i]) / s;
          worst = std::max(worst, e);
        }
        const double tol = 2.0 * (K + 2) * std::ldexp(1.0, -24);
        if (!(worst <= tol)) ++failures;
        std::printf("%s %-50s worst %.3g of its scale (tolerance %.3g)\n",
                    worst <= tol ? "ok  " : "FAIL", name, worst, tol);
      }
  }
  const int64_t n = 5000;
  {
    std::vector<float> y(n, NAN), r(n, 1.5f);
    launchFill(nullptr, y.data(), n, 1.5f);
    compare("launchFill", y.data(), r.data(), n, -1);
    std::vector<int32_t> yi(n, 0);
    launchFillInt(nullptr, yi.data(), n, 7);
    const bool ok = std::all_of(yi.begin(), yi.end(), [](int32_t v) { return v == 7; });
    if (!ok) ++failures;
    std::printf("%s launchFillInt\n", ok ? "ok  " : "FAIL");
    std::vector<float> x = randomVec(n), z = randomVec(n), rz = z;
    launchAxpby(nullptr, n, 0.5f, x.data(), -2.f, z.data());
    cpu::axpby(n, 0.5f, x.data(), -2.f, rz.data());
    compare("launchAxpby", z.data(), rz.data(), n, -1);
  }
  {
    const int64_t rows = 70, cols = 300;
    std::vector<float> y = randomVec(rows * cols), bias = randomVec(cols), r = y;
    launchAddBias(nullptr, y.data(), bias.data(), rows, cols);
    cpu::addBias(r.data(), bias.data(), rows, cols);
    compare("launchAddBias", y.data(), r.data(), y.size(), -1);
    std::vector<float> db = randomVec(cols), rdb = db;
    launchBiasBackward(nullptr, y.data(), db.data(), rows, cols);
    cpu::biasBackward(y.data(), rdb.data(), rows, cols);
    compare("launchBiasBackward", db.data(), rdb.data(), cols, 1e-6);
    for (Activation act : {Activation::Relu, Activation::Tanh, Activation::Sigmoid}) {
      std::vector<float> out(y.size()), rout(y.size()), dx(y.size()), rdx(y.size());
      launchActivationForward(nullptr, act, y.data(), out.data(), y.size());
      cpu::activationForward(act, y.data(), rout.data(), y.size());
      compare("launchActivationForward " + std::to_string(int(act)), out.data(), rout.data(),
              y.size(), 1e-5);
      launchActivationBackward(nullptr, act, rout.data(), r.data(), dx.data(), y.size());
      cpu::activationBackward(act, rout.data(), r.data(), rdx.data(), y.size());
      compare("launchActivationBackward " + std::to_string(int(act)), dx.data(), rdx.data(),
              y.size(), -1);
    }
  }
  for (int64_t rows : {2, 256})
    for (int64_t cols : {45, 256}) {
      std::vector<float> x = randomVec(rows * cols, 97, 105), gamma = randomVec(cols, 0.5, 1.5);
      std::vector<float> beta = randomVec(cols), rm = randomVec(cols), rv = randomVec(cols, 0.5, 2);
      std::vector<float> sm(cols), sis(cols), y(rows * cols), ry(rows * cols);
      auto rrm = rm, rrv = rv, rsm = sm, rsis = sis;
      launchBatchNormForward(nullptr, x.data(), gamma.data(), beta.data(), y.data(), rm.data(),
                             rv.data(), sm.data(), sis.data(), rows, cols, 0.1f, 1e-5f, true);
      cpu::batchNormForward(x.data(), gamma.data(), beta.data(), ry.data(), rrm.data(), rrv.data(),
                            rsm.data(), rsis.data(), rows, cols, 0.1f, 1e-5f, true);
      const std::string tag = std::to_string(rows) + "x" + std::to_string(cols);
      compare("launchBatchNormForward y " + tag, y.data(), ry.data(), y.size(), 1e-5);
      compare("launchBatchNormForward runningVar " + tag, rv.data(), rrv.data(), cols, 1e-6);
      std::vector<float> dy = randomVec(rows * cols), dx(rows * cols), rdx(rows * cols);
      std::vector<float> dg = randomVec(cols), db = randomVec(cols), rdg = dg, rdb = db;
      launchBatchNormBackward(nullptr, x.data(), dy.data(), gamma.data(), sm.data(), sis.data(),
                              dx.data(), dg.data(), db.data(), rows, cols);
      cpu::batchNormBackward(x.data(), dy.data(), gamma.data(), rsm.data(), rsis.data(),
                             rdx.data(), rdg.data(), rdb.data(), rows, cols);
      compare("launchBatchNormBackward dx " + tag, dx.data(), rdx.data(), dx.size(), 1e-5);
      compare("launchBatchNormBackward dgamma " + tag, dg.data(), rdg.data(), cols, 1e-6);
    }
  {
    const int64_t rows = 100, classes = 10;
    std::vector<float> logits = randomVec(rows * classes, -5, 5), probs(rows * classes);
    std::vector<float> rprobs(rows * classes);
    std::vector<int32_t> labels(rows);
    for (int64_t r = 0; r < rows; ++r) labels[r] = static_cast<int32_t>((r * 3) % classes);
    std::vector<double> rowLoss(rows);
    int flag = -1;
    float loss = NAN, rloss = NAN;
    launchLabelCheck(nullptr, labels.data(), rows, classes, true, &flag);
    launchSoftmaxCrossEntropyForward(nullptr, logits.data(), labels.data(), probs.data(), &loss,
                                     rows, classes, rowLoss.data(), &flag);
    cpu::softmaxCrossEntropyForward(logits.data(), labels.data(), rprobs.data(), &rloss, rows,
                                    classes);
    compare("launchSoftmaxCrossEntropyForward probs", probs.data(), rprobs.data(), probs.size(),
            1e-5);
    compare("launchSoftmaxCrossEntropyForward loss", &loss, &rloss, 1, 1e-6);
    std::vector<float> d(rows * classes), rd(rows * classes), oh(rows * classes, NAN);
    std::vector<float> roh(rows * classes);
    launchSoftmaxCrossEntropyBackward(nullptr, rprobs.data(), labels.data(), d.data(), rows,
                                      classes, 0.5f);
    cpu::softmaxCrossEntropyBackward(rprobs.data(), labels.data(), rd.data(), rows, classes, 0.5f);
    compare("launchSoftmaxCrossEntropyBackward", d.data(), rd.data(), d.size(), -1);
    launchOneHot(nullptr, labels.data(), oh.data(), rows, classes, &flag);
    cpu::oneHot(labels.data(), roh.data(), rows, classes);
    compare("launchOneHot", oh.data(), roh.data(), oh.size(), -1);
    std::vector<float> a = randomVec(rows * 3), out(rows * (3 + classes)), rout = out;
    launchConcatColumns(nullptr, a.data(), logits.data(), out.data(), rows, 3, classes);
    cpu::concatColumns(a.data(), logits.data(), rout.data(), rows, 3, classes);
    compare("launchConcatColumns", out.data(), rout.data(), out.size(), -1);
    std::vector<float> da(rows * 3, 9.f), rda = da;
    launchSplitColumns(nullptr, out.data(), da.data(), nullptr, rows, 3, classes);
    cpu::splitColumns(rout.data(), rda.data(), nullptr, rows, 3, classes);
    compare("launchSplitColumns", da.data(), rda.data(), da.size(), -1);
  }
  for (int64_t rows : {int64_t(1), int64_t(100), int64_t(3000)}) {  // sigmoid CE
    const int64_t cols = 9;
    std::vector<float> z = randomVec(rows * cols, -6, 6), t = randomVec(rows * cols, 0, 1);
    std::vector<float> p(rows * cols, NAN), rp(rows * cols, NAN), d(rows * cols), rd(rows * cols);
    std::vector<double> rowLoss(rows);
    float loss = NAN, rloss = NAN;
    launchSigmoidCrossEntropyForward(nullptr, z.data(), t.data(), p.data(), &loss, rows, cols,
                                     rowLoss.data());
    cpu::sigmoidCrossEntropyForward(z.data(), t.data(), rp.data(), &rloss, rows, cols);
    const std::string tag = " " + std::to_string(rows) + "x" + std::to_string(cols);
    compare("launchSigmoidCrossEntropyForward probs" + tag, p.data(), rp.data(), p.size(), 1e-5);
    compare("launchSigmoidCrossEntropyForward loss" + tag, &loss, &rloss, 1, 1e-6);
    launchSigmoidCrossEntropyBackward(nullptr, rp.data(), t.data(), d.data(), rows * cols, 0.25f);
    cpu::sigmoidCrossEntropyBackward(rp.data(), t.data(), rd.data(), rows * cols, 0.25f);
    compare("launchSigmoidCrossEntropyBackward" + tag, d.data(), rd.data(), d.size(), -1);
  }
  {  // empty inputs: loss 0 as the CPU, nothing launched for the rows
    float loss = NAN, rloss = NAN;
    double scratch = 0.0;
    launchSigmoidCrossEntropyForward(nullptr, nullptr, nullptr, nullptr, &loss, 0, 4, &scratch);
    cpu::sigmoidCrossEntropyForward(nullptr, nullptr, nullptr, &rloss, 0, 4);
    compare("launchSigmoidCrossEntropyForward 0 rows", &loss, &rloss, 1, -1);
  }
  for (int64_t rows : {int64_t(1), int64_t(256)})  // the LSTM cell: grids over rows * hidden
    for (int64_t hidden : {int64_t(3), int64_t(300)}) {
      const int64_t n = rows * hidden;
      std::vector<float> g = randomVec(4 * n, -3, 3), cp = randomVec(n), rg = g;
      std::vector<float> c(n, NAN), h(n, NAN), rc(n, NAN), rh(n, NAN);
      launchLstmCellForward(nullptr, g.data(), cp.data(), c.data(), h.data(), rows, hidden);
      cpu::lstmCellForward(rg.data(), cp.data(), rc.data(), rh.data(), rows, hidden);
      const std::string tag = " " + std::to_string(rows) + "x" + std::to_string(hidden);
      std::vector<float> dh = randomVec(n), dc = randomVec(n), dg(4 * n, NAN), rdg(4 * n, NAN);
      const LstmScales sc = lstmScales(rg, cp, rc, rh, dh, dc.data(), rows, hidden);
      compare("launchLstmCellForward gates" + tag, g.data(), rg.data(), g.size(), 1e-5);
      compareScaled("launchLstmCellForward c" + tag, c.data(), rc.data(), sc.c, n, 1e-5);
      compareScaled("launchLstmCellForward h" + tag, h.data(), rh.data(), sc.h, n, 1e-5);
      std::vector<float> dcp(n, NAN), rdcp(n, NAN);
      launchLstmCellBackward(nullptr, rg.data(), cp.data(), rc.data(), dh.data(), dc.data(),
                             dg.data(), dcp.data(), rows, hidden);
      cpu::lstmCellBackward(rg.data(), cp.data(), rc.data(), dh.data(), dc.data(), rdg.data(),
                            rdcp.data(), rows, hidden);
      compareScaled("launchLstmCellBackward dgates" + tag, dg.data(), rdg.data(), sc.dgates,
                    dg.size(), 1e-5);
      compareScaled("launchLstmCellBackward dcPrev" + tag, dcp.data(), rdcp.data(), sc.dcPrev, n,
                    1e-5);
    }
  {  // empty: nothing launched, nothing written
    emu::launches.clear();
    launchLstmCellForward(nullptr, nullptr, nullptr, nullptr, nullptr, 0, 8);
    launchLstmCellBackward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                           5, 0);
    const bool none = emu::launches.empty();
    if (!none) ++failures;
    std::printf("%s launchLstmCell* launch nothing for empty inputs\n", none ? "ok  " : "FAIL");
  }
  for (int64_t m : {int64_t(1), int64_t(4097), int64_t(20000)}) {
    std::vector<float> p = randomVec(m), t = randomVec(m), d(m), rd(m);
    std::vector<double> partials(mseScratchCount(m));
    float loss = NAN, rloss = NAN;
    launchMseForward(nullptr, p.data(), t.data(), &loss, m, partials.data());
    cpu::mseForward(p.data(), t.data(), &rloss, m);
    compare("launchMseForward n=" + std::to_string(m), &loss, &rloss, 1, 1e-6);
    launchMseBackward(nullptr, p.data(), t.data(), d.data(), m, 0.3f);
    cpu::mseBackward(p.data(), t.data(), rd.data(), m, 0.3f);
    compare("launchMseBackward n=" + std::to_string(m), d.data(), rd.data(), m, -1);
  }
  {
    std::vector<float> p = randomVec(n), g = randomVec(n), v = randomVec(n), m = randomVec(n);
    std::vector<float> v2 = randomVec(n, 0, 1);
    auto rp = p, rv = v, rm = m, rv2 = v2;
    launchSgdStep(nullptr, p.data(), g.data(), v.data(), n, 0.01f, 0.9f, 1e-4f);
    cpu::sgdStep(rp.data(), g.data(), rv.data(), n, 0.01f, 0.9f, 1e-4f);
    compare("launchSgdStep", p.data(), rp.data(), n, -1);
    launchAdamStep(nullptr, p.data(), g.data(), m.data(), v2.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f,
                   0.f, 7);
    cpu::adamStep(rp.data(), g.data(), rm.data(), rv2.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.f,
                  7);
    compare("launchAdamStep", p.data(), rp.data(), n, -1);
  }
  {  // A configuration CUDA refuses must surface as the launcher's exception.
    bool threw = false;
    emu::launches.clear();
    try {
      SG_LAUNCH(dim3(1), dim3(2048), 0, nullptr, optimizer_k::writeScalarsKernel)(
          static_cast<float*>(nullptr), ScalarArgs{});
      CUDA_CHECK_LAUNCH();
    } catch (const std::runtime_error& e) {
      threw = std::string(e.what()).find("cudaErrorInvalidConfiguration") != std::string::npos;
    }
    if (!threw) ++failures;
    std::printf("%s a launch of 2048 threads per block is refused\n", threw ? "ok  " : "FAIL");
  }
}

}  // namespace

// The TF32 kernel (opt-in: setGemmTf32) through launchSgemm: both tile sizes (128 x 128 by 8
// warps, 64 x 64 by 4, chosen by shape and SM count), split K, cp.async double buffering
// (here plain copies), the wmma tiles (mma.h of this folder), all transposes, 16-byte copies
// (leading dimensions multiples of 4) and 4-byte ones with zero fill (odd ones, or a base
// that is not 16-byte aligned), K = 0, odd K and K not a multiple of the K tile, partial
// tiles of M and N, C with its own leading dimension (float4 or scalar stores), and the bias
// + activation epilogue. The reference is the CPU's fp32 product of the inputs rounded to
// TF32 as the kernel rounds them; the two add the products in different orders, hence the
// fp32 bound 2 (K + 2) u of the |.| product (+ |bias| or |beta C|), and with an activation 8 u
// of the result more. A kernel that skipped the rounding of either operand would be off by
// about 2^-11 of it.
// What this cannot check: the hardware's fragment layouts, cp.async and its wait groups.
void tf32Tests() {
  std::mt19937 own(99);  // its own generator: the other tests' inputs stay as they were
  auto vec = [&](size_t n) {
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(own);
    return v;
  };
  setGemmTf32(true);
  struct Case {
    int M, N, K, numSMs;
  };
  // numSMs 1: every shape takes the 128 x 128 tile. 132 (an H100/H200): the 64 x 64 tile,
  // split K at 130x70x257 (6 tiles: 4 slices) and 256x256x256 (16 tiles: 4 slices); the
  // 128 x 128 tile at 1537x1543x8 (13 x 13 blocks).
  const Case cases[] = {{130, 70, 257, 132}, {37, 45, 20, 132},    {64, 64, 16, 132},  {1, 300, 64, 132},
                        {65, 3, 5, 132},     {64, 64, 0, 132},     {256, 256, 256, 132}, {1537, 1543, 8, 132},
                        {130, 70, 257, 1},   {37, 45, 20, 1},      {128, 128, 16, 1},  {1, 300, 64, 1},
                        {65, 3, 5, 1},       {64, 64, 0, 1},       {200, 260, 33, 1},  {129, 131, 1, 1}};
  // pad: added to every leading dimension (1: odd ones, scalar copies and stores); shift: the
  // operands start 1 float past a 16-byte boundary (scalar copies with even leading dims).
  struct Layout {
    int pad, shift;
  };
  const Layout layouts[] = {{0, 0}, {1, 0}, {4, 0}, {0, 1}};
  int run = 0;
  for (const Case& cs : cases)
    for (int tr = 0; tr < 4; ++tr)
      for (const Layout& lay : layouts) {
        const int M = cs.M, N = cs.N, K = cs.K, numSMs = cs.numSMs;
        const bool big = M == 1537;
        if (big && lay.pad + lay.shift != 0 && tr != 1) continue;  // the large shape: fewer runs
        ++run;
        const bool ta = tr & 1, tb = tr & 2;
        const int64_t lda = (ta ? M : K) + lay.pad, ldb = (tb ? K : N) + lay.pad, ldc = N + lay.pad;
        std::vector<float> Abuf = vec((ta ? K : M) * lda + lay.shift), Bbuf = vec((tb ? N : K) * ldb + lay.shift);
        std::vector<float> bias = vec(N), Cbuf = vec(int64_t(M) * ldc + lay.shift);
        const float* A = Abuf.data() + lay.shift;
        const float* B = Bbuf.data() + lay.shift;
        float* C = Cbuf.data() + lay.shift;
        const std::vector<float> Cinit = Cbuf;
        std::vector<float> R(int64_t(M) * N), C0(R.size());
        for (int m = 0; m < M; ++m)
          for (int n = 0; n < N; ++n) R[int64_t(m) * N + n] = C0[int64_t(m) * N + n] = C[m * ldc + n];
        // The epilogue (bias + an activation, beta 0) on every other case.
        const bool epilogue = run % 2 == 0;
        const int act = run % 6 == 0 ? 2 : 1;  // sigmoid or tanh
        const float beta = epilogue ? 0.f : 0.5f;
        std::vector<float> ws(sgemmWorkspaceFloats(M, N, K, numSMs, true), NAN);
        emu::launches.clear();
        launchSgemm(nullptr, ta, tb, M, N, K, 0.75f, A, lda, B, ldb, beta, C, ldc, numSMs, true,
                    epilogue ? bias.data() : nullptr, epilogue ? act : -1, ws.empty() ? nullptr : ws.data());
        // The launches expected: the 128 x 128 tile (256 threads) when 128 x 128 tiles cover the
        // SMs; else the 64 x 64 one (128 threads), with a grid of 4 K slices and a reduction
        // after it where the plan splits K.
        const bool bigTile = int64_t((M + 127) / 128) * ((N + 127) / 128) >= numSMs;
        const bool split = !ws.empty();
        const unsigned tile = bigTile ? 128 : 64;
        bool launchesOk = emu::launches.size() == (split ? 2u : 1u) && !emu::launches.empty() &&
                          emu::launches[0].kernel.find("Tf32") != std::string::npos &&
                          emu::launches[0].block.x == (bigTile ? 256u : 128u) &&
                          emu::launches[0].grid.x == (M + tile - 1) / tile &&
                          emu::launches[0].grid.y == (N + tile - 1) / tile &&
                          emu::launches[0].grid.z == (split ? 4u : 1u);
        if (split) launchesOk = launchesOk && emu::launches[1].kernel.find("splitKReduce") != std::string::npos;
        if ((M == 130 || M == 256) && numSMs == 132) launchesOk = launchesOk && split;
        std::vector<float> At(A, A + (ta ? K : M) * lda), Bt(B, B + (tb ? N : K) * ldb);
        for (auto& v : At) v = nvcuda::wmma::__float_to_tf32(v);
        for (auto& v : Bt) v = nvcuda::wmma::__float_to_tf32(v);
        cpu::sgemm(ta, tb, M, N, K, 0.75f, At.data(), lda, Bt.data(), ldb, beta, R.data(), N);
        if (epilogue) {
          cpu::addBias(R.data(), bias.data(), M, N);
          cpu::activationForward(static_cast<Activation>(act), R.data(), R.data(), int64_t(M) * N);
        }
        std::vector<float> absA(At.size()), absB(Bt.size()), scale(R.size());
        for (size_t i = 0; i < At.size(); ++i) absA[i] = std::fabs(At[i]);
        for (size_t i = 0; i < Bt.size(); ++i) absB[i] = std::fabs(Bt[i]);
        cpu::sgemm(ta, tb, M, N, K, 0.75f, absA.data(), lda, absB.data(), ldb, 0.f, scale.data(), N);
        // Allowed: the bound below on the terms added before the activation (|bias| included),
        // which the activations (slope <= 1) do not enlarge, plus 8 u of the result for the
        // activation's own rounding (the device's tanhf / expf against the CPU's).
        const double tol = 2.0 * (K + 2) * std::ldexp(1.0, -24);
        double worst = 0;
        for (int m = 0; m < M; ++m)
          for (int n = 0; n < N; ++n) {
            const int64_t i = int64_t(m) * N + n;
            const double got = C[m * ldc + n];
            const double terms = scale[i] + (epilogue ? std::fabs(bias[n]) : 0.5 * std::fabs(C0[i]));
            const double allowed = tol * terms + 8 * std::ldexp(std::fabs(R[i]), -24) + 1e-30;
            const double e = std::isnan(got) ? INFINITY : std::fabs(got - R[i]) / allowed;
            worst = std::max(worst, e);
          }
        // The padding between rows of C is never written.
        bool padKept = true;
        for (int m = 0; m < M; ++m)
          for (int n = N; n < ldc; ++n) padKept = padKept && std::memcmp(&C[m * ldc + n], &Cinit[lay.shift + m * ldc + n], 4) == 0;
        const bool ok = worst <= 1 && launchesOk && padKept;
        if (!ok) ++failures;
        char name[200];
        std::snprintf(name, sizeof name, "launchSgemm TF32 %dx%dx%d %c%c on %d SMs ld+%d +%d%s%s%s", M, N, K,
                      ta ? 'T' : 'N', tb ? 'T' : 'N', numSMs, lay.pad, lay.shift, epilogue ? " epilogue" : "",
                      launchesOk ? "" : " (not the expected launches)", padKept ? "" : " (wrote C's padding)");
        std::printf("%s %-62s worst %.3g of the allowed error (%.3g of the terms)\n", ok ? "ok  " : "FAIL", name, worst,
                    tol);
      }
  setGemmTf32(false);
}

int main() {
  gemmEpilogueCases();
  gemmAll<128, 128, 8>();
  gemmAll<64, 64, 16>();
  elementwiseTests();
  batchNormTests();
  lossTests();
  ignoredLabelTests();
  sigmoidCrossEntropyTests();
  lstmTests();
  convTests();
  optimizerTests();
  launcherTests();
  tf32Tests();
  std::printf(failures ? "\n%d FAILURES\n" : "\nall passed\n", failures);
  return failures ? 1 : 0;
}
