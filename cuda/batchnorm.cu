// BatchNorm over the batch dimension of x [rows, cols]: forward (training and inference) and
// backward of training mode.
//
// One block per tile of kBnCols = 8 consecutive columns, kBnLanes = 128 row lanes (1024
// threads): lane y reads rows y, y + 128, ... of its column (8 consecutive floats of a row:
// one 32-byte sector per row and tile), the block reduces them with columnSumOf (common.cuh:
// double accumulation, fixed order, no atomics), computes the per-column constants in double
// exactly as the CPU kernel does, then applies them to its columns. Narrow tiles and many
// lanes so that this project's shapes fill the GPU: [256, 256] is 32 blocks of 1024 threads,
// each lane 2 rows per pass (the former 32 x 16 tiles gave 8 blocks and 16 rows per lane).
// Forward, training: two passes, the mean then the squared deviations from it (biased
// variance to normalise; running stats use the unbiased one, as PyTorch), then
//   y = ((x - hi) - lo) * scale + shift,  hi + lo = mean split in two floats,
// the CPU's formula, written with explicit roundings so that it matches it bit for bit.
// One read of x: each lane keeps its first kBnCachedRows values (rows < 8 x 128 = 1024) in
// registers for the three passes (mean, deviations, apply), which run over those registers
// in the same order as over memory, so the sums are the same; rows past them are read again
// from memory. The two-pass variance stays (a one-pass sum of squares loses digits to the
// |mean| >> std cancellation that the CPU's two passes avoid); the backward keeps x and dy
// of those rows the same way (one read instead of two).
// Backward: dbeta = sum dy, dgamma = sum dy xhat (accumulated), dx overwritten; the float
// rounding of the saved mean is corrected with the residual mean, as on the CPU.
// A block only touches its own columns, and reads all of x before writing y, so in-place
// use would also be safe (ops.cpp forbids it anyway).
#include <cmath>

#include "check.cuh"
#include "common.cuh"
#include "kernels.cuh"

namespace sg::cuda {
namespace {

// ============================================================================================
// kernels
// ============================================================================================
// (The host emulation, test/cuda/host_emulation/run.sh, runs the text between this banner
// line "// kernels" and the "// launchers" one on the CPU: keep both lines exactly as they are.)

constexpr int kBnCols = 8;     // columns per block (threadIdx.x)
constexpr int kBnLanes = 128;  // row lanes per block (threadIdx.y)
constexpr int kBnCachedRows = 8;  // rows per lane held in registers (rows < 1024: x read once)
using BnScratch = ColumnScratchOf<kBnCols, kBnLanes>;

// Lane ty's rows ty, ty + kBnLanes, ... of column c: the first kBnCachedRows into `cache`
// (0 past the end; callers use only k with row(k) < rows).
__device__ inline void loadCachedRows(const float* __restrict__ a, int64_t rows, int64_t cols,
                                      int64_t c, int ty, bool ok, float (&cache)[kBnCachedRows]) {
#pragma unroll
  for (int k = 0; k < kBnCachedRows; ++k) {
    const int64_t r = ty + static_cast<int64_t>(k) * kBnLanes;
    cache[k] = ok && r < rows ? a[r * cols + c] : 0.0f;
  }
}
constexpr int64_t kBnCachedSpan = static_cast<int64_t>(kBnCachedRows) * kBnLanes;

// x and y never overlap (ops.cpp checks), hence __restrict__ on them. The per-column vectors
// (a few hundred floats, read and written by one lane each) keep plain pointers: ops.cpp does
// not check that they are distinct from one another.
__global__ void __launch_bounds__(kBnCols* kBnLanes)
    batchNormForwardKernel(const float* __restrict__ x, const float* gamma, const float* beta,
                           float* __restrict__ y, float* runningMean, float* runningVar,
                           float* saveMean, float* saveInvStd, int64_t rows, int64_t cols,
                           float momentum, float eps, bool training) {
  __shared__ BnScratch red;
  __shared__ float sHi[kBnCols], sLo[kBnCols], sScale[kBnCols], sShift[kBnCols];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kBnCols + tx;
  const bool ok = c < cols;
  float cache[kBnCachedRows];
  loadCachedRows(x, rows, cols, c, ty, ok, cache);
  auto rowOf = [&](int k) { return ty + static_cast<int64_t>(k) * kBnLanes; };

  if (training) {
    const double n = static_cast<double>(rows);
    double s = 0.0;
    if (ok) {
#pragma unroll
      for (int k = 0; k < kBnCachedRows; ++k)
        if (rowOf(k) < rows) s += cache[k];
      for (int64_t r = ty + kBnCachedSpan; r < rows; r += kBnLanes) s += x[r * cols + c];
    }
    const double mean = columnSumOf<kBnCols, kBnLanes>(s, red) / n;
    double q = 0.0;
    if (ok) {
#pragma unroll
      for (int k = 0; k < kBnCachedRows; ++k)
        if (rowOf(k) < rows) {
          const double d = static_cast<double>(cache[k]) - mean;
          q += d * d;
        }
      for (int64_t r = ty + kBnCachedSpan; r < rows; r += kBnLanes) {
        const double d = static_cast<double>(x[r * cols + c]) - mean;
        q += d * d;
      }
    }
    const double m2 = columnSumOf<kBnCols, kBnLanes>(q, red);
    if (ok && ty == 0) {
      const double var = m2 / n;
      const double invStd = 1.0 / sqrt(var + static_cast<double>(eps));
      const double unbias = rows > 1 ? n / (n - 1.0) : 1.0;
      const double mom = momentum;
      saveMean[c] = static_cast<float>(mean);
      saveInvStd[c] = static_cast<float>(invStd);
      runningMean[c] = static_cast<float>((1.0 - mom) * runningMean[c] + mom * mean);
      runningVar[c] = static_cast<float>((1.0 - mom) * runningVar[c] + mom * var * unbias);
      const float hi = static_cast<float>(mean);
      sHi[tx] = hi;
      sLo[tx] = static_cast<float>(mean - static_cast<double>(hi));
      sScale[tx] = static_cast<float>(invStd * static_cast<double>(gamma[c]));
      sShift[tx] = beta[c];
    }
  } else if (ok && ty == 0) {
    const double invStd =
        1.0 / sqrt(static_cast<double>(runningVar[c]) + static_cast<double>(eps));
    sHi[tx] = runningMean[c];
    sLo[tx] = 0.0f;
    sScale[tx] = static_cast<float>(invStd * static_cast<double>(gamma[c]));
    sShift[tx] = beta[c];
  }
  __syncthreads();

  if (ok) {
    const float hi = sHi[tx], lo = sLo[tx], scale = sScale[tx], shift = sShift[tx];
    auto apply = [&](float v) { return __fadd_rn(__fmul_rn(__fsub_rn(__fsub_rn(v, hi), lo), scale), shift); };
#pragma unroll
    for (int k = 0; k < kBnCachedRows; ++k)
      if (rowOf(k) < rows) y[rowOf(k) * cols + c] = apply(cache[k]);
    for (int64_t r = ty + kBnCachedSpan; r < rows; r += kBnLanes) y[r * cols + c] = apply(x[r * cols + c]);
  }
}

// With xhat = (x - mean) invStd, N = rows:
//   dbeta += sum dy, dgamma += sum dy xhat, dx = gamma invStd (dy - dbeta/N - xhat dgamma/N)
// computed as the CPU does. saveMean is the float rounding of the batch mean, a visible shift
// of xhat when |mean| >> std; so the pass also sums xc = x - saveMean (exact near the mean)
// to get the residual lo = mean - saveMean, and uses x - mean = xc - lo:
//   dgamma = (sum dy xc - lo sum dy) invStd,  dx = a ((dy - b) - (xc - lo) k) per column.
// x and dy never overlap dx (ops.cpp checks): __restrict__ on the three (the per-column
// vectors as in the forward).
__global__ void __launch_bounds__(kBnCols* kBnLanes)
    batchNormBackwardKernel(const float* __restrict__ x, const float* __restrict__ dy,
                            const float* gamma, const float* saveMean, const float* saveInvStd,
                            float* __restrict__ dx, float* dgamma, float* dbeta, int64_t rows,
                            int64_t cols) {
  __shared__ BnScratch red;
  __shared__ float sA[kBnCols], sB[kBnCols], sK[kBnCols], sLo[kBnCols];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kBnCols + tx;
  const bool ok = c < cols;
  const float mu = ok ? saveMean[c] : 0.0f;
  float xs[kBnCachedRows], gs[kBnCachedRows];
  loadCachedRows(x, rows, cols, c, ty, ok, xs);
  loadCachedRows(dy, rows, cols, c, ty, ok, gs);
  auto rowOf = [&](int k) { return ty + static_cast<int64_t>(k) * kBnLanes; };

  double sumDy = 0.0, sumDyXc = 0.0, sumXc = 0.0;
  auto add = [&](float xv, float gv) {
    const double g = gv;
    const double xc = __fsub_rn(xv, mu);
    sumDy += g;
    sumDyXc += g * xc;  // a product of two floats is exact in double (FMA or not)
    sumXc += xc;
  };
  if (ok) {
#pragma unroll
    for (int k = 0; k < kBnCachedRows; ++k)
      if (rowOf(k) < rows) add(xs[k], gs[k]);
    for (int64_t r = ty + kBnCachedSpan; r < rows; r += kBnLanes) add(x[r * cols + c], dy[r * cols + c]);
  }
  sumDy = columnSumOf<kBnCols, kBnLanes>(sumDy, red);
  sumDyXc = columnSumOf<kBnCols, kBnLanes>(sumDyXc, red);
  sumXc = columnSumOf<kBnCols, kBnLanes>(sumXc, red);

  if (ok && ty == 0) {
    const double n = static_cast<double>(rows);
    const double invStd = saveInvStd[c];
    const double residual = sumXc / n;  // mean - saveMean
    const double dGamma = __dmul_rn(__dsub_rn(sumDyXc, __dmul_rn(residual, sumDy)), invStd);
    dbeta[c] = __fadd_rn(dbeta[c], static_cast<float>(sumDy));
    dgamma[c] = __fadd_rn(dgamma[c], static_cast<float>(dGamma));
    sA[tx] = static_cast<float>(static_cast<double>(gamma[c]) * invStd);
    sB[tx] = static_cast<float>(sumDy / n);
    sK[tx] = static_cast<float>(dGamma * invStd / n);
    sLo[tx] = static_cast<float>(residual);
  }
  __syncthreads();

  if (ok) {
    const float a = sA[tx], b = sB[tx], k = sK[tx], lo = sLo[tx];
    auto grad = [&](float xv, float gv) {
      const float xc = __fsub_rn(__fsub_rn(xv, mu), lo);
      return __fmul_rn(a, __fsub_rn(__fsub_rn(gv, b), __fmul_rn(xc, k)));
    };
#pragma unroll
    for (int j = 0; j < kBnCachedRows; ++j)
      if (rowOf(j) < rows) dx[rowOf(j) * cols + c] = grad(xs[j], gs[j]);
    for (int64_t r = ty + kBnCachedSpan; r < rows; r += kBnLanes) dx[r * cols + c] = grad(x[r * cols + c], dy[r * cols + c]);
  }
}

}  // namespace

// ============================================================================================
// launchers
// ============================================================================================

void launchBatchNormForward(cudaStream_t stream, const float* x, const float* gamma,
                            const float* beta, float* y, float* runningMean, float* runningVar,
                            float* saveMean, float* saveInvStd, int64_t rows, int64_t cols,
                            float momentum, float eps, bool training) {
  if (cols <= 0) return;
  if (training && rows <= 0) return;  // as the CPU: nothing to normalise, stats untouched
  const int64_t tiles = (cols + kBnCols - 1) / kBnCols;
  SG_LAUNCH(static_cast<unsigned>(tiles), dim3(kBnCols, kBnLanes), 0, stream,
            batchNormForwardKernel)(
      x, gamma, beta, y, runningMean, runningVar, saveMean, saveInvStd, rows, cols, momentum, eps,
      training);
  CUDA_CHECK_LAUNCH();
}

void launchBatchNormBackward(cudaStream_t stream, const float* x, const float* dy,
                             const float* gamma, const float* saveMean, const float* saveInvStd,
                             float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t tiles = (cols + kBnCols - 1) / kBnCols;
  SG_LAUNCH(static_cast<unsigned>(tiles), dim3(kBnCols, kBnLanes), 0, stream,
            batchNormBackwardKernel)(
      x, dy, gamma, saveMean, saveInvStd, dx, dgamma, dbeta, rows, cols);
  CUDA_CHECK_LAUNCH();
}

}  // namespace sg::cuda
