// CPU kernels other than GEMM: fills, axpby, bias, activations, BatchNorm, losses, the LSTM
// cell, shape ops and optimizer steps, on raw contiguous row-major float32/int32 buffers (see
// kernels.h).
//
// Design:
//  - Portable code. Plain loops that g++ -O3 auto-vectorises with the baseline x86-64 ISA
//    (SSE2): no intrinsics, no -march, no -ffast-math. libm's expf/tanhf are scalar calls that
//    stop the vectoriser, so softmax, sigmoid and tanh use the small inline exp/expm1 below
//    (Cody-Waite range reduction + Taylor polynomial, a few ulp, NaN propagates).
//  - Threads. Loops go through sg::parallelFor with grains sized so that one chunk is tens of
//    thousands of floats; smaller tensors run inline on the calling thread.
//  - Determinism. Reductions cut their input into chunks fixed by the shape (never by the
//    thread count), accumulate each chunk in double and add the partials in chunk order on
//    the calling thread, so results are bit-identical for any parallelism.
//  - Without -ffast-math the compiler may not reorder a floating-point sum, so 1-D sums are
//    written with 8 explicit lanes: they vectorise, and their order stays fixed.
//  - Also without -ffast-math, a select like `x < c ? x : c` feeding float arithmetic can
//    keep a loop scalar (see the exp section), and std::sqrt keeps an errno branch (see
//    adamStep); the code below is shaped around both.
#include "kernels.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/parallel.h"

namespace sg::cpu {
namespace {

// ---- work splitting ---------------------------------------------------------------------

// Items per parallel chunk, by cost per element.
constexpr int64_t kGrainLight = 1 << 17;   // one or two streams: fill, copy, axpby, ReLU
constexpr int64_t kGrainMedium = 1 << 15;  // several streams: optimizers, BatchNorm, reductions
constexpr int64_t kGrainHeavy = 1 << 14;   // transcendental per element: tanh, sigmoid, softmax

// Fixed chunk sizes of the reductions. They define the summation order, so they are constants
// (changing them changes results in the last bits, but never with the thread count).
constexpr int64_t kReduceRows = 256;      // rows per partial in column reductions
constexpr int64_t kReduceItems = 1 << 15; // elements per partial in 1-D reductions
constexpr int64_t kMaxColBlock = 1024;    // columns per column-reduction task (acc stays in L1)

// Runs body over [0, n) in chunks of `grain`; a loop of a single chunk runs inline without
// building a std::function.
template <class Body>
void forRange(int64_t n, int64_t grain, Body&& body) {
  if (n <= 0) return;
  if (n <= grain) {
    body(int64_t{0}, n);
    return;
  }
  sg::parallelFor(n, grain, body);
}

// Rows per chunk so that a chunk of a [rows, cols] matrix holds about `items` elements.
inline int64_t rowGrain(int64_t cols, int64_t items) {
  return std::max<int64_t>(1, items / std::max<int64_t>(1, cols));
}

// y[i] = op(x[i]); x == y allowed. The two branches give the vectoriser loops without
// possible partial overlap, so it needs no runtime alias checks.
template <class Op>
void mapUnary(const float* x, float* y, int64_t n, int64_t grain, Op op) {
  forRange(n, grain, [=](int64_t b, int64_t e) {
    const int64_t len = e - b;
    if (x == y) {
      float* p = y + b;
      for (int64_t i = 0; i < len; ++i) p[i] = op(p[i]);
    } else {
      const float* __restrict xs = x + b;
      float* __restrict ys = y + b;
      for (int64_t i = 0; i < len; ++i) ys[i] = op(xs[i]);
    }
  });
}

// out[i] = op(a[i], b[i]); out == b allowed (a never aliases out).
template <class Op>
void mapBinary(const float* a, const float* b, float* out, int64_t n, int64_t grain, Op op) {
  forRange(n, grain, [=](int64_t lo, int64_t hi) {
    const int64_t len = hi - lo;
    const float* __restrict as = a + lo;
    if (out == b) {
      float* __restrict os = out + lo;
      for (int64_t i = 0; i < len; ++i) os[i] = op(as[i], os[i]);
    } else {
      const float* __restrict bs = b + lo;
      float* __restrict os = out + lo;
      for (int64_t i = 0; i < len; ++i) os[i] = op(as[i], bs[i]);
    }
  });
}

// ---- lane-wise 1-D reductions (vectorisable, fixed order) --------------------------------

// max of x[0, n), n >= 1. NaNs are skipped; callers see them through later arithmetic.
// (g++ does not vectorise a float max without -ffast-math, but the 8 independent lanes still
// run as independent maxss.)
inline float laneMax(const float* x, int64_t n) {
  float lane[8];
  for (int j = 0; j < 8; ++j) lane[j] = -INFINITY;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
  float m = -INFINITY;
  for (int j = 0; j < 8; ++j) m = lane[j] > m ? lane[j] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// sum of x[0, n) in double.
inline double laneSum(const float* x, int64_t n) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] += static_cast<double>(x[i + j]);
  double s = 0;
  for (; i < n; ++i) s += static_cast<double>(x[i]);
  for (int j = 0; j < 8; ++j) s += lane[j];
  return s;
}

// sum of (a[i] - b[i])^2 over [0, n) in double (the difference of two floats is exact there).
inline double laneSumSquaredDiff(const float* a, const float* b, int64_t n) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) {
      const double d = static_cast<double>(a[i + j]) - static_cast<double>(b[i + j]);
      lane[j] += d * d;
    }
  double s = 0;
  for (; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    s += d * d;
  }
  for (int j = 0; j < 8; ++j) s += lane[j];
  return s;
}

// ---- column reductions over [rows, cols] ------------------------------------------------
//
// Fills out[k][c] (k < K) with per-column sums. body(r0, r1, c0, c1, acc) adds the terms of
// rows [r0, r1) and columns [c0, c1) into acc[k][c - c0] (zeroed beforehand), visiting rows
// in order. Rows are cut into fixed chunks of kReduceRows whose partials are added in chunk
// order; columns are cut into blocks, which only spreads the work (a column's sum does not
// depend on the blocking). This parallelises over columns for the common rows ~ 256 case and
// over row chunks as well for tall matrices (evaluation batches).
template <int K, class Body>
void columnReduce(int64_t rows, int64_t cols, const std::array<double*, K>& out, Body body) {
  if (cols <= 0) return;
  if (rows <= 0) {
    for (int k = 0; k < K; ++k) std::fill(out[k], out[k] + cols, 0.0);
    return;
  }
  const int64_t chunkRows = std::min(rows, kReduceRows);
  const int64_t rowChunks = (rows + kReduceRows - 1) / kReduceRows;
  int64_t colBlock = std::max<int64_t>(16, kGrainMedium / chunkRows);
  colBlock = std::min({(colBlock + 15) / 16 * 16, kMaxColBlock, cols});
  const int64_t colBlocks = (cols + colBlock - 1) / colBlock;

  // With a single row chunk the tasks write straight into out.
  std::vector<double> partial(rowChunks > 1 ? K * rowChunks * cols : 0);
  auto accBase = [&](int k, int64_t rc) {
    return rowChunks > 1 ? partial.data() + (k * rowChunks + rc) * cols : out[k];
  };

  const int64_t tasks = rowChunks * colBlocks;
  const int64_t taskGrain = std::max<int64_t>(1, kGrainMedium / (chunkRows * colBlock));
  forRange(tasks, taskGrain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t rc = t / colBlocks, cb = t % colBlocks;
      const int64_t r0 = rc * kReduceRows, r1 = std::min(rows, r0 + kReduceRows);
      const int64_t c0 = cb * colBlock, c1 = std::min(cols, c0 + colBlock);
      std::array<double*, K> acc;
      for (int k = 0; k < K; ++k) {
        acc[k] = accBase(k, rc) + c0;
        std::fill(acc[k], acc[k] + (c1 - c0), 0.0);
      }
      body(r0, r1, c0, c1, acc);
    }
  });

  if (rowChunks > 1) {
    for (int k = 0; k < K; ++k) {
      double* o = out[k];
      std::copy(accBase(k, 0), accBase(k, 0) + cols, o);
      for (int64_t rc = 1; rc < rowChunks; ++rc) {
        const double* p = accBase(k, rc);
        for (int64_t c = 0; c < cols; ++c) o[c] += p[c];
      }
    }
  }
}

// ---- exp / expm1 for non-positive arguments ----------------------------------------------
//
// Softmax needs e^(x - max), sigmoid e^-|x| and tanh e^(-2|x|) - 1: all arguments are <= 0, so
// no overflow handling is needed. x = n ln2 + r with |r| <= ~ln2/2, e^x = 2^n e^r; 2^n is
// built in the exponent field. Taylor coefficients suffice on that interval: the first
// dropped term is below 1e-8 relative, under float rounding.

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;       // ln 2 rounded to 9 bits: n * kLn2Hi is exact
constexpr float kLn2Lo = -2.12194440e-4f;    // ln 2 - kLn2Hi
constexpr float kRoundMagic = 12582912.0f;   // 1.5 * 2^23: (t + M) - M rounds t to an integer

// Returns r and sets n (an integer in float) with x = n ln2 + r.
inline float reduceLn2(float x, float& n) {
  n = (x * kLog2e + kRoundMagic) - kRoundMagic;  // SSE2 has no round instruction
  return (x - n * kLn2Hi) - n * kLn2Lo;
}

inline float bitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint32_t floatToBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// 2^n for an integer-valued n in [-126, 127].
inline float pow2i(float n) {
  return bitsToFloat(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
}

// Argument handling is done on the bits with branch-free integer arithmetic. g++ (without
// -ffast-math) turns a select such as `x < c ? x : c` into a branch whose arms it
// specialises (constant-folding the polynomial on one of them), and then cannot if-convert
// the float arithmetic under -ftrapping-math: the whole loop would stay scalar.
constexpr uint32_t kSignBit = 0x80000000u;
constexpr uint32_t kAbsMask = 0x7fffffffu;
constexpr uint32_t kInfBits = 0x7f800000u;  // |x| bits above this: NaN
constexpr uint32_t kNaNBits = 0x7fc00000u;

// All ones if a > b, else 0 (a, b < 2^31).
inline uint32_t greaterMask(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>(static_cast<int32_t>(b - a) >> 31);
}

// -min(|x|, limit) from the bits of |x| (NaN and inf give -limit).
inline float negClamped(uint32_t absBits, float limit) {
  const uint32_t lim = floatToBits(limit);
  const uint32_t over = greaterMask(absBits, lim);
  return bitsToFloat(((absBits & ~over) | (lim & over)) | kSignBit);
}

// e^x for x <= 0 (the sign of x is ignored): 0 below -87 (no denormals), NaN stays NaN.
inline float expNonPositive(float x) {
  const uint32_t absBits = floatToBits(x) & kAbsMask;
  const float xc = negClamped(absBits, 87.0f);
  float n;
  const float r = reduceLn2(xc, n);
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const uint32_t e = floatToBits(p * pow2i(n));
  const uint32_t keep = ~greaterMask(absBits, floatToBits(87.0f));
  const uint32_t nan = greaterMask(absBits, kInfBits) & kNaNBits;
  return bitsToFloat((e & keep) | nan);
}

// e^y - 1 for y <= 0 (the sign of y is ignored), accurate near 0 where tanh needs it; -1
// below -20; NaN stays NaN.
inline float expm1NonPositive(float y) {
  const uint32_t absBits = floatToBits(y) & kAbsMask;
  const float yc = negClamped(absBits, 20.0f);
  float n;
  const float r = reduceLn2(yc, n);
  // q = e^r - 1 = r (1 + r/2! + ... + r^7/8!), computed without cancellation
  float p = 1.0f / 40320;
  p = p * r + 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  const float q = p * r;
  const float s = pow2i(n);
  // e^y - 1 = 2^n q + (2^n - 1); for n == 0 this is q exactly, otherwise |result| > 0.29.
  const uint32_t nan = greaterMask(absBits, kInfBits) & kNaNBits;
  return bitsToFloat(floatToBits(s * q + (s - 1.0f)) | nan);
}

// tanh(x) = -sign(x) e / (e + 2) with e = e^(-2|x|) - 1 in (-1, 0]: never overflows, and
// keeps full relative accuracy for small |x|.
inline float tanhValue(float x) {
  const float e = expm1NonPositive(2.0f * x);  // uses -|2x|
  return std::copysign(e / (e + 2.0f), x);
}

// sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) for x < 0, with e = e^-|x| <= 1.
inline float sigmoidValue(float x) {
  const float e = expNonPositive(x);
  const uint32_t negative = static_cast<uint32_t>(static_cast<int32_t>(floatToBits(x)) >> 31);
  const float num = bitsToFloat((floatToBits(e) & negative) | (floatToBits(1.0f) & ~negative));
  return num / (1.0f + e);
}

// ---- BatchNorm helpers -------------------------------------------------------------------

// y[r, c] = ((x[r, c] - hi[c]) - lo[c]) * scale[c] + shift[c] for rows [r0, r1).
// The mean is split in hi + lo floats so that x - mean keeps double accuracy when
// |mean| >> std (x - hi is exact for x near hi).
void bnApplyRows(const float* x, float* y, int64_t r0, int64_t r1, int64_t cols,
                 const float* __restrict hi, const float* __restrict lo,
                 const float* __restrict scale, const float* __restrict shift) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    if (xr == yr) {
      for (int64_t c = 0; c < cols; ++c) yr[c] = ((yr[c] - hi[c]) - lo[c]) * scale[c] + shift[c];
    } else {
      const float* __restrict xs = xr;
      float* __restrict ys = yr;
      for (int64_t c = 0; c < cols; ++c) ys[c] = ((xs[c] - hi[c]) - lo[c]) * scale[c] + shift[c];
    }
  }
}

// Every label in [lowest, classes).
bool labelsInRange(const int32_t* labels, int64_t rows, int64_t classes, int32_t lowest = 0) {
  bool ok = true;
  for (int64_t r = 0; r < rows; ++r) ok &= labels[r] >= lowest && labels[r] < classes;
  return ok;
}

}  // namespace

// ---- elementwise and broadcast -----------------------------------------------------------

void fill(float* y, int64_t n, float value) {
  forRange(n, kGrainLight, [=](int64_t b, int64_t e) { std::fill(y + b, y + e, value); });
}

void fillInt(int32_t* y, int64_t n, int32_t value) {
  forRange(n, kGrainLight, [=](int64_t b, int64_t e) { std::fill(y + b, y + e, value); });
}

void axpby(int64_t n, float a, const float* x, float b, float* y) {
  if (b == 0.0f) {
    // y's old contents are ignored, NaN included.
    mapUnary(x, y, n, kGrainLight, [a](float xv) { return a * xv; });
  } else if (x == y) {
    mapUnary(y, y, n, kGrainLight, [a, b](float v) { return a * v + b * v; });
  } else {
    mapBinary(x, y, y, n, kGrainLight, [a, b](float xv, float yv) { return a * xv + b * yv; });
  }
}

void addBias(float* y, const float* bias, int64_t rows, int64_t cols) {
  forRange(rows, rowGrain(cols, kGrainLight), [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* __restrict yr = y + r * cols;
      const float* __restrict bs = bias;
      for (int64_t c = 0; c < cols; ++c) yr[c] += bs[c];
    }
  });
}

void biasBackward(const float* dy, float* dbias, int64_t rows, int64_t cols) {
  if (cols <= 0) return;
  std::vector<double> sum(cols);
  columnReduce<1>(rows, cols, {sum.data()},
                  [=](int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                      const std::array<double*, 1>& acc) {
                    double* a = acc[0];
                    for (int64_t r = r0; r < r1; ++r) {
                      const float* row = dy + r * cols + c0;
                      for (int64_t c = 0; c < c1 - c0; ++c) a[c] += row[c];
                    }
                  });
  for (int64_t c = 0; c < cols; ++c) dbias[c] += static_cast<float>(sum[c]);
}

void activationForward(Activation act, const float* x, float* y, int64_t n) {
  switch (act) {
    case Activation::Relu:
      // x < 0 ? 0 : x keeps NaN (as PyTorch does)
      mapUnary(x, y, n, kGrainLight, [](float v) { return v < 0.0f ? 0.0f : v; });
      break;
    case Activation::Tanh:
      mapUnary(x, y, n, kGrainHeavy, [](float v) { return tanhValue(v); });
      break;
    case Activation::Sigmoid:
      mapUnary(x, y, n, kGrainHeavy, [](float v) { return sigmoidValue(v); });
      break;
  }
}

void activationBackward(Activation act, const float* y, const float* dy, float* dx, int64_t n) {
  switch (act) {
    case Activation::Relu:  // y > 0 exactly where x > 0
      mapBinary(y, dy, dx, n, kGrainLight, [](float yv, float g) { return yv > 0.0f ? g : 0.0f; });
      break;
    case Activation::Tanh:  // tanh' = 1 - y^2 = (1 - y)(1 + y): no cancellation near |y| = 1
      mapBinary(y, dy, dx, n, kGrainLight,
                [](float yv, float g) { return g * ((1.0f - yv) * (1.0f + yv)); });
      break;
    case Activation::Sigmoid:  // sigmoid' = y (1 - y)
      mapBinary(y, dy, dx, n, kGrainLight,
                [](float yv, float g) { return g * (yv * (1.0f - yv)); });
      break;
  }
}

// ---- BatchNorm ---------------------------------------------------------------------------

void batchNormForward(const float* x, const float* gamma, const float* beta, float* y,
                      float* runningMean, float* runningVar, float* saveMean, float* saveInvStd,
                      int64_t rows, int64_t cols, float momentum, float eps, bool training) {
  if (cols <= 0) return;
  // Per-column affine map y = ((x - hi) - lo) * scale + shift (see bnApplyRows).
  std::vector<float> hi(cols), lo(cols), scale(cols), shift(beta, beta + cols);

  if (training) {
    if (rows <= 0) return;
    const double n = static_cast<double>(rows);
    // Two passes, both accumulated in double: the mean, then squared deviations from it.
    std::vector<double> mean(cols), m2(cols);
    columnReduce<1>(rows, cols, {mean.data()},
                    [=](int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                        const std::array<double*, 1>& acc) {
                      double* a = acc[0];
                      for (int64_t r = r0; r < r1; ++r) {
                        const float* row = x + r * cols + c0;
                        for (int64_t c = 0; c < c1 - c0; ++c) a[c] += row[c];
                      }
                    });
    for (int64_t c = 0; c < cols; ++c) mean[c] /= n;
    const double* meanData = mean.data();
    columnReduce<1>(rows, cols, {m2.data()},
                    [=](int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                        const std::array<double*, 1>& acc) {
                      double* a = acc[0];
                      const double* mu = meanData + c0;
                      for (int64_t r = r0; r < r1; ++r) {
                        const float* row = x + r * cols + c0;
                        for (int64_t c = 0; c < c1 - c0; ++c) {
                          const double d = row[c] - mu[c];
                          a[c] += d * d;
                        }
                      }
                    });
    // Running variance uses the unbiased estimate (PyTorch); a batch of one row has none,
    // and then contributes its (zero) biased variance instead of dividing by zero.
    const double unbias = rows > 1 ? n / (n - 1) : 1.0;
    const double mom = momentum;
    for (int64_t c = 0; c < cols; ++c) {
      const double var = m2[c] / n;
      const double invStd = 1.0 / std::sqrt(var + static_cast<double>(eps));
      saveMean[c] = static_cast<float>(mean[c]);
      saveInvStd[c] = static_cast<float>(invStd);
      runningMean[c] = static_cast<float>((1.0 - mom) * runningMean[c] + mom * mean[c]);
      runningVar[c] = static_cast<float>((1.0 - mom) * runningVar[c] + mom * var * unbias);
      hi[c] = static_cast<float>(mean[c]);
      lo[c] = static_cast<float>(mean[c] - hi[c]);
      scale[c] = static_cast<float>(invStd * gamma[c]);
    }
  } else {
    for (int64_t c = 0; c < cols; ++c) {
      const double invStd =
          1.0 / std::sqrt(static_cast<double>(runningVar[c]) + static_cast<double>(eps));
      hi[c] = runningMean[c];
      lo[c] = 0.0f;
      scale[c] = static_cast<float>(invStd * gamma[c]);
    }
  }

  const float *h = hi.data(), *l = lo.data(), *s = scale.data(), *t = shift.data();
  forRange(rows, rowGrain(cols, kGrainMedium), [=](int64_t r0, int64_t r1) {
    bnApplyRows(x, y, r0, r1, cols, h, l, s, t);
  });
}

// With xhat = (x - mean) invStd, N = rows:
//   dbeta = sum dy, dgamma = sum dy xhat,
//   dx = gamma invStd (dy - dbeta / N - xhat dgamma / N).
// saveMean is the float rounding of the batch mean; when |mean| >> std that rounding is a
// visible shift of xhat. So the pass also sums x - saveMean (exact near the mean) in double
// to get the residual lo = mean - saveMean, and uses x - mean = (x - saveMean) - lo, as the
// forward does.
void batchNormBackward(const float* x, const float* dy, const float* gamma,
                       const float* saveMean, const float* saveInvStd, float* dx,
                       float* dgamma, float* dbeta, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  // One pass: sum dy, sum dy (x - saveMean), sum (x - saveMean).
  std::vector<double> sumDy(cols), sumDyXc(cols), sumXc(cols);
  columnReduce<3>(rows, cols, {sumDy.data(), sumDyXc.data(), sumXc.data()},
                  [=](int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                      const std::array<double*, 3>& acc) {
                    double* __restrict a0 = acc[0];
                    double* __restrict a1 = acc[1];
                    double* __restrict a2 = acc[2];
                    const float* mu = saveMean + c0;
                    for (int64_t r = r0; r < r1; ++r) {
                      const float* xr = x + r * cols + c0;
                      const float* gr = dy + r * cols + c0;
                      for (int64_t c = 0; c < c1 - c0; ++c) {
                        const double g = gr[c], xc = xr[c] - mu[c];
                        a0[c] += g;
                        a1[c] += g * xc;  // a product of two floats is exact in double
                        a2[c] += xc;
                      }
                    }
                  });

  // dx = a ((dy - b) - ((x - saveMean) - lo) k) per column.
  const double n = static_cast<double>(rows);
  std::vector<float> a(cols), b(cols), k(cols), lo(cols);
  for (int64_t c = 0; c < cols; ++c) {
    const double invStd = saveInvStd[c];
    const double residual = sumXc[c] / n;                                // mean - saveMean
    const double dGamma = (sumDyXc[c] - residual * sumDy[c]) * invStd;  // sum dy xhat
    dbeta[c] += static_cast<float>(sumDy[c]);
    dgamma[c] += static_cast<float>(dGamma);
    a[c] = static_cast<float>(static_cast<double>(gamma[c]) * invStd);
    b[c] = static_cast<float>(sumDy[c] / n);
    k[c] = static_cast<float>(dGamma * invStd / n);
    lo[c] = static_cast<float>(residual);
  }

  const float *pa = a.data(), *pb = b.data(), *pk = k.data(), *plo = lo.data();
  forRange(rows, rowGrain(cols, kGrainMedium), [=](int64_t r0, int64_t r1) {
    const float* __restrict mu = saveMean;
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * cols;
      const float* gr = dy + r * cols;
      float* out = dx + r * cols;
      for (int64_t c = 0; c < cols; ++c)
        out[c] = pa[c] * ((gr[c] - pb[c]) - ((xr[c] - mu[c]) - plo[c]) * pk[c]);
    }
  });
}

// ---- losses ------------------------------------------------------------------------------

bool softmaxCrossEntropyForward(const float* logits, const int32_t* labels, float* probs,
                                float* loss, int64_t rows, int64_t classes) {
  if (!labelsInRange(labels, rows, classes, kIgnoredLabel)) return false;
  if (rows <= 0) {
    *loss = 0.0f;  // no rows, no loss
    return true;
  }
  // probs must not alias logits (the header does not allow it; z and p are __restrict).
  // Per-row losses, summed in row order afterwards: independent of how rows are chunked.
  std::vector<double> rowLoss(rows);
  double* rl = rowLoss.data();
  forRange(rows, rowGrain(classes, kGrainHeavy), [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* __restrict z = logits + r * classes;
      float* __restrict p = probs + r * classes;
      const float m = laneMax(z, classes);  // subtract the max: exp never overflows
      for (int64_t c = 0; c < classes; ++c) p[c] = expNonPositive(z[c] - m);
      const double sum = laneSum(p, classes);
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t c = 0; c < classes; ++c) p[c] *= inv;
      // -log p[label] = log(sum) - (z[label] - m): finite even when p[label] underflows.
      // An ignored row adds 0 (a zero added to the double sum leaves it unchanged).
      rl[r] = labels[r] == kIgnoredLabel
                  ? 0.0
                  : std::log(sum) - (static_cast<double>(z[labels[r]]) - static_cast<double>(m));
    }
  });
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) total += rl[r];
  *loss = static_cast<float>(total / static_cast<double>(rows));
  return true;
}

void softmaxCrossEntropyBackward(const float* probs, const int32_t* labels, float* dlogits,
                                 int64_t rows, int64_t classes, float scale) {
  if (rows <= 0) return;
  const float k = static_cast<float>(static_cast<double>(scale) / static_cast<double>(rows));
  forRange(rows, rowGrain(classes, kGrainLight), [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* p = probs + r * classes;
      float* d = dlogits + r * classes;
      const int32_t label = labels[r];
      if (label == kIgnoredLabel) {  // no target at this row: no gradient
        std::fill(d, d + classes, 0.0f);
        continue;
      }
      const bool valid = label >= 0 && label < classes;  // checked by forward; never write OOB
      const float pl = valid ? p[label] : 0.0f;          // read before d (may alias p) changes
      for (int64_t c = 0; c < classes; ++c) d[c] = k * p[c];
      if (valid) d[label] = k * (pl - 1.0f);
    }
  });
}

void mseForward(const float* pred, const float* target, float* loss, int64_t n) {
  if (n <= 0) {
    *loss = 0.0f;  // no elements, no loss
    return;
  }
  // parallelFor's chunks are fixed by (n, kReduceItems): partial i covers chunk i.
  const int64_t chunks = (n + kReduceItems - 1) / kReduceItems;
  std::vector<double> partial(chunks);
  double* part = partial.data();
  forRange(n, kReduceItems, [=](int64_t b, int64_t e) {
    part[b / kReduceItems] = laneSumSquaredDiff(pred + b, target + b, e - b);
  });
  double total = 0;
  for (int64_t i = 0; i < chunks; ++i) total += part[i];
  *loss = static_cast<float>(total / static_cast<double>(n));
}

void mseBackward(const float* pred, const float* target, float* dpred, int64_t n, float scale) {
  if (n <= 0) return;
  const float k = static_cast<float>(2.0 * static_cast<double>(scale) / static_cast<double>(n));
  forRange(n, kGrainLight, [=](int64_t b, int64_t e) {
    // dpred may alias pred or target; element-wise, so that is safe.
    for (int64_t i = b; i < e; ++i) dpred[i] = k * (pred[i] - target[i]);
  });
}

void sigmoidCrossEntropyForward(const float* logits, const float* targets, float* probs,
                                float* loss, int64_t rows, int64_t cols) {
  if (rows <= 0) {
    *loss = 0.0f;  // no rows, no loss
    return;
  }
  // probs must not alias logits or targets (ops.cpp checks it). Per-row sums, added in row
  // order afterwards: independent of how rows are chunked.
  std::vector<double> rowLoss(rows);
  double* rl = rowLoss.data();
  forRange(rows, rowGrain(cols, kGrainHeavy), [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* __restrict z = logits + r * cols;
      const float* __restrict t = targets + r * cols;
      float* __restrict p = probs + r * cols;
      for (int64_t k = 0; k < cols; ++k) p[k] = sigmoidValue(z[k]);
      // -[t log s + (1 - t) log(1 - s)] with s = sigmoid(z) equals max(z, 0) - z t +
      // log(1 + e^-|z|): no log of a probability that rounds to 0 or 1. In double, with libm
      // (few elements per step; the accuracy matters more than the speed here).
      double sum = 0.0;
      for (int64_t k = 0; k < cols; ++k) {
        const double zv = z[k], tv = t[k];
        sum += ((zv > 0.0 ? zv : 0.0) - zv * tv) + std::log1p(std::exp(-std::fabs(zv)));
      }
      rl[r] = sum;
    }
  });
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) total += rl[r];
  *loss = static_cast<float>(total / static_cast<double>(rows));
}

void sigmoidCrossEntropyBackward(const float* probs, const float* targets, float* dlogits,
                                 int64_t n, float scale) {
  forRange(n, kGrainLight, [=](int64_t b, int64_t e) {
    // dlogits may alias probs or targets; element-wise, so that is safe.
    for (int64_t i = b; i < e; ++i) dlogits[i] = scale * (probs[i] - targets[i]);
  });
}

// ---- LSTM cell -----------------------------------------------------------------------------
//
// Row-parallel; within a row, each gate block is one vectorisable loop. Products are rounded
// one at a time (no FMA on the baseline ISA), in the order the CUDA kernels (cuda/lstm.cu)
// spell out with __fmul_rn/__fadd_rn. tanh(c) is recomputed by the backward rather than
// stored: one more tanh per element is cheaper than a [rows, hidden] buffer per step.

void lstmCellForward(float* gates, const float* cPrev, float* c, float* h, int64_t rows,
                     int64_t hidden) {
  const int64_t H = hidden, cols = 4 * hidden;
  forRange(rows, rowGrain(cols, kGrainHeavy), [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* __restrict a = gates + r * cols;
      for (int64_t j = 0; j < 2 * H; ++j) a[j] = sigmoidValue(a[j]);  // i, f
      for (int64_t j = 2 * H; j < 3 * H; ++j) a[j] = tanhValue(a[j]);  // g
      for (int64_t j = 3 * H; j < cols; ++j) a[j] = sigmoidValue(a[j]);  // o
      const float* __restrict cp = cPrev + r * H;
      float* __restrict cr = c + r * H;
      float* __restrict hr = h + r * H;
      for (int64_t j = 0; j < H; ++j) {
        const float cv = a[H + j] * cp[j] + a[j] * a[2 * H + j];
        cr[j] = cv;
        hr[j] = a[3 * H + j] * tanhValue(cv);
      }
    }
  });
}

namespace {

// One row of lstmCellBackward; dc null or not is a compile-time choice so that both loops
// vectorise. dc and dcPrev may be the same buffer: each element is read before it is written.
template <bool kHasDc>
void lstmBackwardRow(const float* __restrict a, const float* __restrict cp,
                     const float* __restrict cr, const float* __restrict dhr, const float* dcr,
                     float* __restrict dg, float* dcp, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const float i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
    const float tc = tanhValue(cr[j]);
    const float dhv = dhr[j];
    // 1 - t^2 as (1 - t)(1 + t): no cancellation near |t| = 1 (as activationBackward).
    const float viaH = dhv * o * ((1.0f - tc) * (1.0f + tc));
    const float dct = kHasDc ? dcr[j] + viaH : viaH;
    dg[j] = dct * g * (i * (1.0f - i));
    dg[H + j] = dct * cp[j] * (f * (1.0f - f));
    dg[2 * H + j] = dct * i * ((1.0f - g) * (1.0f + g));
    dg[3 * H + j] = dhv * tc * (o * (1.0f - o));
    dcp[j] = dct * f;
  }
}

}  // namespace

void lstmCellBackward(const float* gates, const float* cPrev, const float* c, const float* dh,
                      const float* dc, float* dgates, float* dcPrev, int64_t rows,
                      int64_t hidden) {
  const int64_t H = hidden, cols = 4 * hidden;
  forRange(rows, rowGrain(cols, kGrainHeavy), [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t o4 = r * cols, o1 = r * H;
      if (dc)
        lstmBackwardRow<true>(gates + o4, cPrev + o1, c + o1, dh + o1, dc + o1, dgates + o4,
                              dcPrev + o1, H);
      else
        lstmBackwardRow<false>(gates + o4, cPrev + o1, c + o1, dh + o1, nullptr, dgates + o4,
                               dcPrev + o1, H);
    }
  });
}

// ---- shape ops ---------------------------------------------------------------------------

bool oneHot(const int32_t* labels, float* out, int64_t rows, int64_t classes) {
  if (!labelsInRange(labels, rows, classes)) return false;
  forRange(rows, rowGrain(classes, kGrainLight), [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* o = out + r * classes;
      std::fill(o, o + classes, 0.0f);
      o[labels[r]] = 1.0f;
    }
  });
  return true;
}

void concatColumns(const float* a, const float* b, float* out, int64_t rows, int64_t colsA,
                   int64_t colsB) {
  const int64_t cols = colsA + colsB;
  forRange(rows, rowGrain(cols, kGrainLight), [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* o = out + r * cols;
      if (colsA > 0) std::memcpy(o, a + r * colsA, colsA * sizeof(float));
      if (colsB > 0) std::memcpy(o + colsA, b + r * colsB, colsB * sizeof(float));
    }
  });
}

void splitColumns(const float* dout, float* da, float* db, int64_t rows, int64_t colsA,
                  int64_t colsB) {
  const int64_t cols = colsA + colsB;
  forRange(rows, rowGrain(cols, kGrainLight), [=](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* d = dout + r * cols;
      if (da && colsA > 0) std::memcpy(da + r * colsA, d, colsA * sizeof(float));
      if (db && colsB > 0) std::memcpy(db + r * colsB, d + colsA, colsB * sizeof(float));
    }
  });
}

// ---- optimizers --------------------------------------------------------------------------

void sgdStep(float* param, const float* grad, float* velocity, int64_t n, float lr,
             float momentum, float weightDecay) {
  if (momentum == 0.0f) {
    forRange(n, kGrainMedium, [=](int64_t b, int64_t e) {
      float* __restrict p = param;
      const float* __restrict g = grad;
      for (int64_t i = b; i < e; ++i) p[i] -= lr * (g[i] + weightDecay * p[i]);
    });
  } else {
    forRange(n, kGrainMedium, [=](int64_t b, int64_t e) {
      float* __restrict p = param;
      const float* __restrict g = grad;
      float* __restrict v = velocity;
      for (int64_t i = b; i < e; ++i) {
        v[i] = momentum * v[i] + (g[i] + weightDecay * p[i]);
        p[i] -= lr * v[i];
      }
    });
  }
}

void adamStep(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
              float beta1, float beta2, float eps, float weightDecay, int64_t step) {
  adamStepScaled(param, grad, m, v, n, adamScalars(lr, beta1, beta2, step), beta1, beta2, eps,
                 weightDecay);
}

// As torch.optim.Adam: param -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps).
// std::sqrt keeps a (never taken) errno branch without -fno-math-errno, which stops the
// vectoriser; so each block runs the moment updates and the parameter update as vector loops
// and only the sqrt as a tight scalar loop (still correctly rounded, as in PyTorch).
void adamStepScaled(float* param, const float* grad, float* m, float* v, int64_t n,
                    AdamScalars scalars, float beta1, float beta2, float eps, float weightDecay) {
  const float stepSize = scalars.stepSize, bc2Sqrt = scalars.bc2Sqrt;
  const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
  forRange(n, kGrainMedium, [=](int64_t b, int64_t e) {
    constexpr int64_t kBlock = 256;
    float root[kBlock];
    for (int64_t b0 = b; b0 < e; b0 += kBlock) {
      const int64_t len = std::min(kBlock, e - b0);
      float* __restrict p = param + b0;
      const float* __restrict g = grad + b0;
      float* __restrict mm = m + b0;
      float* __restrict vv = v + b0;
      for (int64_t i = 0; i < len; ++i) {
        const float gi = g[i] + weightDecay * p[i];
        mm[i] = beta1 * mm[i] + c1 * gi;
        vv[i] = beta2 * vv[i] + c2 * (gi * gi);
      }
      for (int64_t i = 0; i < len; ++i) root[i] = std::sqrt(vv[i]);
      for (int64_t i = 0; i < len; ++i) p[i] -= stepSize * (mm[i] / (root[i] / bc2Sqrt + eps));
    }
  });
}

}  // namespace sg::cpu
