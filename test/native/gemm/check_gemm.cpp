// Correctness check for sg::cpu::sgemm against a float64 reference.
//
// For every SIMD path this CPU can run (avx512, avx2, generic) it multiplies many shapes:
// all four transpose combinations, awkward sizes around the tile and block edges, leading
// dimensions larger than the row length, non-trivial alpha/beta, beta == 0 over a NaN-filled
// C, and the degenerate cases. Padding of A/B is filled with NaN (any read outside the
// matrix poisons the result) and padding of C with a sentinel (any write outside it is
// caught). Two kinds of data:
//   - exact: small integers (|x| <= 4), alpha = 2, beta = -0.5. Every product, partial sum
//     and the final scaling are exactly representable in float (|sums| < 2^24), so the
//     result must equal the reference bit for bit in any summation order: a missing,
//     repeated or misplaced term cannot hide.
//   - random: uniform in +-[0.5, 1), alpha/beta arbitrary. Bound per element (Higham,
//     recursive/blocked summation with one rounding per fused multiply-add, then the
//     alpha/beta update): |err| <= 2 * (K + 3) * u * (|alpha| * sum_k |a_ik b_kj| + |beta c_ij|),
//     u = 2^-24, the factor 2 being slack over the first-order term of gamma_(K+3). Because
//     every |a b| >= 0.25, dropping or doubling one term would exceed it for K up to ~1500.
// It also checks that results are bit-identical for 1, 2 and 3 threads, and the epilogue
// (gemm.h: a bias and an element-wise map applied to each finished tile): bit for bit what
// sgemm followed by a bias pass and the map gives, on every kind of tile and split.
// Exits non-zero on any failure.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../../../native/core/parallel.h"
#include "../../../native/cpu/gemm.h"
#include "../../../native/cpu/gemm_kernels.h"
#include "../../../native/cpu/kernels.h"

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kSentinel = -12345.75f;

std::mt19937_64 rng(20240601);

enum class Data { Exact, Random };

float randomValue(Data data) {
  if (data == Data::Exact) {
    std::uniform_int_distribution<int> d(1, 4);
    return static_cast<float>(d(rng) * (rng() & 1 ? 1 : -1));
  }
  std::uniform_real_distribution<float> d(0.5f, 1.0f);
  return d(rng) * (rng() & 1 ? 1.0f : -1.0f);
}

// A rows x cols row-major matrix with row stride ld >= cols; the padding holds `pad`.
struct Matrix {
  int64_t rows = 0, cols = 0, ld = 0;
  std::vector<float> v;
  Matrix(int64_t r, int64_t c, int64_t padCols, float pad) : rows(r), cols(c), ld(c + padCols) {
    // One extra row of padding catches reads/writes just past the end.
    v.assign(static_cast<size_t>((r + 1) * ld + 1), pad);
  }
  float& at(int64_t i, int64_t j) { return v[i * ld + j]; }
  float at(int64_t i, int64_t j) const { return v[i * ld + j]; }
};

void fillMatrix(Matrix& m, Data data) {
  for (int64_t i = 0; i < m.rows; ++i)
    for (int64_t j = 0; j < m.cols; ++j) m.at(i, j) = randomValue(data);
}

struct Case {
  bool transA, transB;
  int64_t M, N, K;
  float alpha, beta;
  Data data;
  bool nanC;        // C starts as NaN (only meaningful with beta == 0)
  int64_t padA, padB, padC;
};

int failures = 0;
int checks = 0;

void fail(const Case& c, const char* isa, const char* what) {
  ++failures;
  if (failures <= 30)
    std::printf("FAIL [%s] tA=%d tB=%d M=%lld N=%lld K=%lld alpha=%g beta=%g "
                "pads=%lld/%lld/%lld: %s\n",
                isa, c.transA, c.transB, static_cast<long long>(c.M),
                static_cast<long long>(c.N), static_cast<long long>(c.K), c.alpha, c.beta,
                static_cast<long long>(c.padA), static_cast<long long>(c.padB),
                static_cast<long long>(c.padC), what);
}

// Runs one case; returns C so callers can compare runs bit for bit.
std::vector<float> runCase(const Case& c, const char* isa, bool verify = true) {
  ++checks;
  const int64_t aRows = c.transA ? c.K : c.M, aCols = c.transA ? c.M : c.K;
  const int64_t bRows = c.transB ? c.N : c.K, bCols = c.transB ? c.K : c.N;
  Matrix A(aRows, aCols, c.padA, kNaN), B(bRows, bCols, c.padB, kNaN);
  Matrix C(c.M, c.N, c.padC, kSentinel);
  fillMatrix(A, c.data);
  fillMatrix(B, c.data);
  if (c.nanC) {
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < c.N; ++j) C.at(i, j) = kNaN;
  } else {
    fillMatrix(C, c.data);
  }
  const Matrix C0 = C;

  sg::cpu::sgemm(c.transA, c.transB, c.M, c.N, c.K, c.alpha, A.v.data(), A.ld, B.v.data(),
                 B.ld, c.beta, C.v.data(), C.ld);

  if (!verify) return C.v;
  auto opA = [&](int64_t i, int64_t k) { return c.transA ? A.at(k, i) : A.at(i, k); };
  auto opB = [&](int64_t k, int64_t j) { return c.transB ? B.at(j, k) : B.at(k, j); };
  const double u = std::ldexp(1.0, -24);
  double worstRatio = 0;
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < c.N; ++j) {
      double sum = 0, sumAbs = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        const double p = static_cast<double>(opA(i, k)) * opB(k, j);
        sum += p;
        sumAbs += std::fabs(p);
      }
      const double old = c.beta == 0.0f ? 0.0 : static_cast<double>(C0.at(i, j));
      const double expect = static_cast<double>(c.alpha) * sum + static_cast<double>(c.beta) * old;
      const double got = C.at(i, j);
      const double err = std::fabs(got - expect);
      if (c.data == Data::Exact) {
        if (!(err == 0.0)) {
          char msg[160];
          std::snprintf(msg, sizeof msg, "C[%lld,%lld] = %.9g, exact %.9g",
                        static_cast<long long>(i), static_cast<long long>(j), got, expect);
          fail(c, isa, msg);
          return C.v;
        }
      } else {
        const double bound =
            2.0 * (c.K + 3) * u *
                (std::fabs(c.alpha) * sumAbs + std::fabs(c.beta * old)) +
            1e-30;
        if (!(err <= bound)) {
          char msg[200];
          std::snprintf(msg, sizeof msg, "C[%lld,%lld] = %.9g, ref %.9g, err %.3g > bound %.3g",
                        static_cast<long long>(i), static_cast<long long>(j), got, expect, err,
                        bound);
          fail(c, isa, msg);
          return C.v;
        }
        worstRatio = std::max(worstRatio, err / bound);
      }
    }
  }
  // Nothing outside C[0:M, 0:N] may change (padding columns and the guard row).
  for (size_t idx = 0; idx < C.v.size(); ++idx) {
    const int64_t i = static_cast<int64_t>(idx) / C.ld, j = static_cast<int64_t>(idx) % C.ld;
    if (i < c.M && j < c.N) continue;
    if (std::memcmp(&C.v[idx], &C0.v[idx], sizeof(float)) != 0) {
      fail(c, isa, "wrote outside C");
      break;
    }
  }
  return C.v;
}

bool sameBits(const std::vector<float>& x, const std::vector<float>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

// ---- the epilogue -------------------------------------------------------------------------

// An element-wise map that shows whether it ran exactly once on an element: a leaky ReLU of
// slope 1/4 (run twice, or not at all, it changes every negative value; exact in float).
void leakyRows(const void* /*context*/, float* row, int64_t n) {
  for (int64_t j = 0; j < n; ++j) row[j] = row[j] < 0.0f ? 0.25f * row[j] : row[j];
}

// Case c through sgemm with an epilogue (a bias and/or leakyRows) against sgemm followed by
// the bias added to every row and leakyRows over each whole row: equal bit for bit, padding of
// C included. With exact data both must also equal the float64 reference exactly. Returns
// the epilogue's C.
std::vector<float> runEpilogueCase(const Case& c, const char* isa, bool withBias, bool withMap) {
  ++checks;
  const int64_t aRows = c.transA ? c.K : c.M, aCols = c.transA ? c.M : c.K;
  const int64_t bRows = c.transB ? c.N : c.K, bCols = c.transB ? c.K : c.N;
  Matrix A(aRows, aCols, c.padA, kNaN), B(bRows, bCols, c.padB, kNaN);
  Matrix C(c.M, c.N, c.padC, kSentinel);
  fillMatrix(A, c.data);
  fillMatrix(B, c.data);
  fillMatrix(C, c.data);
  std::vector<float> bias(static_cast<size_t>(c.N));
  for (float& v : bias) v = randomValue(c.data);
  const Matrix C0 = C;

  sg::cpu::GemmEpilogue epilogue;
  if (withBias) epilogue.bias = bias.data();
  if (withMap) epilogue.rowMap = leakyRows;
  Matrix fused = C;
  sg::cpu::sgemm(c.transA, c.transB, c.M, c.N, c.K, c.alpha, A.v.data(), A.ld, B.v.data(), B.ld,
                 c.beta, fused.v.data(), fused.ld, epilogue);
  Matrix unfused = C;
  sg::cpu::sgemm(c.transA, c.transB, c.M, c.N, c.K, c.alpha, A.v.data(), A.ld, B.v.data(), B.ld,
                 c.beta, unfused.v.data(), unfused.ld);
  for (int64_t i = 0; i < c.M; ++i) {
    float* row = &unfused.at(i, 0);
    if (withBias)
      for (int64_t j = 0; j < c.N; ++j) row[j] += bias[j];
    if (withMap) leakyRows(nullptr, row, c.N);
  }
  char what[120];
  std::snprintf(what, sizeof what, "epilogue (bias %d, map %d): ", withBias, withMap);
  for (size_t idx = 0; idx < fused.v.size(); ++idx) {
    if (std::memcmp(&fused.v[idx], &unfused.v[idx], sizeof(float)) != 0) {
      char msg[240];
      std::snprintf(msg, sizeof msg, "%sC[%lld,%lld] = %.9g, sgemm then bias and map %.9g", what,
                    static_cast<long long>(static_cast<int64_t>(idx) / C.ld),
                    static_cast<long long>(static_cast<int64_t>(idx) % C.ld), fused.v[idx],
                    unfused.v[idx]);
      fail(c, isa, msg);
      return fused.v;
    }
  }
  if (c.data != Data::Exact) return fused.v;
  auto opA = [&](int64_t i, int64_t k) { return c.transA ? A.at(k, i) : A.at(i, k); };
  auto opB = [&](int64_t k, int64_t j) { return c.transB ? B.at(j, k) : B.at(k, j); };
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      double sum = 0;
      for (int64_t k = 0; k < c.K; ++k) sum += static_cast<double>(opA(i, k)) * opB(k, j);
      double expect =
          static_cast<double>(c.alpha) * sum + static_cast<double>(c.beta) * C0.at(i, j);
      if (withBias) expect += bias[j];
      if (withMap && expect < 0) expect *= 0.25;
      if (!(fused.at(i, j) == expect)) {
        char msg[240];
        std::snprintf(msg, sizeof msg, "%sC[%lld,%lld] = %.9g, exact %.9g", what,
                      static_cast<long long>(i), static_cast<long long>(j), fused.at(i, j), expect);
        fail(c, isa, msg);
        return fused.v;
      }
    }
  return fused.v;
}

void checkEpilogue(const char* isa) {
  const int before = failures, checksBefore = checks;
  const bool flags[2] = {false, true};
  struct Shape { int64_t M, N, K; };
  // Edge tiles of every path (14 x 32, 6 x 16, 4 x 8), K past the K block (several slices
  // before the epilogue may run), N or M within one tile (operands read in place, C computed
  // as its transpose), and products split among threads (shared packing; one rectangle per
  // thread for the 2100 x 1000 operand past the sharing budget).
  const Shape shapes[] = {{1, 1, 1},     {33, 17, 65},   {45, 37, 600},   {300, 10, 20},
                          {10, 70, 300}, {5, 3, 7},      {256, 10, 256},  {10, 256, 256},
                          {29, 33, 513}, {256, 256, 784}, {600, 40, 300}, {2100, 40, 1000}};
  int variant = 0;
  for (const Shape& s : shapes)
    for (bool tA : flags)
      for (bool tB : flags)
        for (int use = 0; use < 3; ++use) {  // bias and map, bias only, map only
          ++variant;
          const bool bias = use != 2, map = use != 1;
          Case c{tA, tB, s.M, s.N, s.K, 2.0f, -0.5f, Data::Exact, false,
                 variant % 3, (variant / 3) % 4, variant % 5};
          if (variant % 4 == 0) c.beta = 0.0f;
          runEpilogueCase(c, isa, bias, map);
          c.data = Data::Random;
          c.alpha = 0.7f;
          runEpilogueCase(c, isa, bias, map);
        }

  // No product to add (K == 0, alpha == 0): C = beta C, then the epilogue.
  for (const Shape& s : {Shape{7, 9, 0}, Shape{40, 50, 30}}) {
    Case c{false, true, s.M, s.N, s.K, s.K ? 0.0f : 1.0f, 0.5f, Data::Exact, false, 1, 2, 3};
    runEpilogueCase(c, isa, true, true);
  }

  // The same bits for 1, 2 and 3 threads.
  const int threadsBefore = sg::parallelism();
  for (const Shape& s : {Shape{256, 256, 784}, Shape{1000, 12, 600}, Shape{12, 1000, 600}})
    for (bool tA : flags) {
      const Case c{tA, !tA, s.M, s.N, s.K, 1.1f, 0.9f, Data::Random, false, 1, 2, 3};
      std::vector<float> results[3];
      for (int t = 1; t <= 3; ++t) {
        sg::setParallelism(t);
        rng.seed(91);
        results[t - 1] = runEpilogueCase(c, isa, true, true);
      }
      if (!sameBits(results[0], results[1]) || !sameBits(results[0], results[2]))
        fail(c, isa, "epilogue: results differ between 1, 2 and 3 threads");
    }
  sg::setParallelism(threadsBefore);
  std::printf("[%s] epilogue: %d checks, %d failures\n", isa, checks - checksBefore,
              failures - before);
}

void checkPath(const char* isa) {
  const int before = failures, checksBefore = checks;
  const bool flags[2] = {false, true};

  // 1. All M x N x K combinations of awkward sizes, all transposes, exact data, padded lds.
  const int64_t sizes[] = {1, 2, 3, 7, 16, 17, 31, 32, 33, 65, 127, 257};
  int variant = 0;
  for (bool tA : flags)
    for (bool tB : flags)
      for (int64_t M : sizes)
        for (int64_t N : sizes)
          for (int64_t K : sizes) {
            ++variant;
            Case c{tA, tB, M, N, K, 2.0f, -0.5f, Data::Exact, false,
                   variant % 3, (variant / 3) % 4, variant % 5};
            if (variant % 7 == 0) {
              c.beta = 0.0f;  // beta = 0 over a NaN-filled C
              c.nanC = true;
            } else if (variant % 11 == 0) {
              c.beta = 1.0f;
            }
            runCase(c, isa);
          }

  // 2. Random data with general alpha/beta, including sizes past the cache blocks (K > KC
  //    so several K slices accumulate; M > MC and N > NC so several blocks run).
  struct Shape { int64_t M, N, K; };
  const Shape shapes[] = {
      {1, 1, 1},      {5, 3, 1000},   {100, 100, 100}, {129, 65, 513},  {300, 47, 777},
      {461, 33, 260}, {17, 2100, 35}, {70, 4200, 9},   {600, 500, 300}, {31, 1030, 1029},
      // the library's training shapes
      {256, 10, 256}, {256, 256, 784}, {256, 784, 256}, {784, 256, 256}, {256, 256, 10},
      {256, 1024, 784}, {10, 256, 256}, {256, 784, 10}};
  for (const Shape& s : shapes)
    for (bool tA : flags)
      for (bool tB : flags) {
        ++variant;
        runCase({tA, tB, s.M, s.N, s.K, 0.7f, 0.3f, Data::Random, false, variant % 4,
                 (variant + 1) % 3, (variant + 2) % 5},
                isa);
        runCase({tA, tB, s.M, s.N, s.K, -1.3f, 0.0f, Data::Random, true, 0, 1, 3}, isa);
      }

  // 3. Degenerate cases: M/N/K == 0, alpha == 0 (A/B must not be read: they are NaN here).
  {
    std::vector<float> nanA(64, kNaN), nanB(64, kNaN), C(64, 1.5f);
    sg::cpu::sgemm(false, false, 4, 4, 4, 0.0f, nanA.data(), 4, nanB.data(), 4, 2.0f, C.data(), 4);
    ++checks;
    for (int i = 0; i < 16; ++i)
      if (C[i] != 3.0f) { fail({}, isa, "alpha == 0 must give C = beta * C"); break; }
    std::fill(C.begin(), C.end(), kNaN);
    sg::cpu::sgemm(true, true, 4, 4, 0, 1.0f, nanA.data(), 4, nanB.data(), 4, 0.0f, C.data(), 4);
    ++checks;
    for (int i = 0; i < 16; ++i)
      if (C[i] != 0.0f) { fail({}, isa, "K == 0, beta == 0 must give C = 0"); break; }
    std::fill(C.begin(), C.end(), 2.0f);
    sg::cpu::sgemm(false, true, 4, 4, 0, 1.0f, nanA.data(), 4, nanB.data(), 4, 0.25f, C.data(), 4);
    ++checks;
    for (int i = 0; i < 16; ++i)
      if (C[i] != 0.5f) { fail({}, isa, "K == 0 must give C = beta * C"); break; }
    std::fill(C.begin(), C.end(), 7.0f);
    sg::cpu::sgemm(false, false, 0, 4, 4, 1.0f, nanA.data(), 4, nanB.data(), 4, 0.0f, C.data(), 4);
    sg::cpu::sgemm(false, false, 4, 0, 4, 1.0f, nanA.data(), 4, nanB.data(), 4, 0.0f, C.data(), 4);
    ++checks;
    for (int i = 0; i < 16; ++i)
      if (C[i] != 7.0f) { fail({}, isa, "M == 0 or N == 0 must not touch C"); break; }
  }

  // 4. Same bits whatever the thread count. The shapes cover both ways of splitting C: tiles
  //    sharing packed operands (tiles shrunk along N, then M) and, for operands past the
  //    sharing budget, one rectangle per thread. The 2-thread run is also checked against
  //    the reference.
  const int threadsBefore = sg::parallelism();
  const Shape threadShapes[] = {{256, 256, 784}, {640, 700, 300}, {1000, 50, 600},
                                {64, 1500, 200}, {300, 300, 15000}};
  for (const Shape& s : threadShapes)
    for (bool tA : flags) {
      const Case c{tA, !tA, s.M, s.N, s.K, 1.1f, 0.9f, Data::Random, false, 1, 2, 3};
      std::vector<float> results[3];
      for (int t = 1; t <= 3; ++t) {
        sg::setParallelism(t);
        rng.seed(77);  // identical inputs for each thread count
        results[t - 1] = runCase(c, isa, t == 2);
      }
      if (!sameBits(results[0], results[1]) || !sameBits(results[0], results[2]))
        fail(c, isa, "results differ between 1, 2 and 3 threads");
    }
  sg::setParallelism(threadsBefore);

  std::printf("[%s] %d checks, %d failures\n", isa, checks - checksBefore, failures - before);
}

}  // namespace

// Usage: check_gemm [isa...]   (default: every path: avx512 avx2 generic)
int main(int argc, char** argv) {
  std::printf("CPU path selected by default: %s, threads: %d\n", sg::cpu::sgemmIsa(),
              sg::parallelism());
  std::vector<const char*> isas(argv + 1, argv + argc);
  if (isas.empty()) isas = {"avx512", "avx2", "generic"};
  int paths = 0;
  for (const char* isa : isas) {
    if (!sg::cpu::gemm_detail::selectSgemmIsa(isa)) {
      std::printf("[%s] not available on this CPU/build, skipped\n", isa);
      continue;
    }
    ++paths;
    checkPath(isa);
    checkEpilogue(isa);
  }
  std::printf("%s: %d paths, %d checks, %d failures\n", failures ? "FAILED" : "OK", paths, checks,
              failures);
  return failures ? 1 : 0;
}
