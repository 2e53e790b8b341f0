// Losses: softmax cross-entropy, sigmoid (binary) cross-entropy and mean squared error,
// forward and backward.
//
// Softmax CE forward: one warp per row. Max by shuffles (exact, the same in every lane), then
// e = exp(z - max) written to probs and summed in double (shuffle tree, then broadcast from
// lane 0), probs scaled by 1/sum, and lane 0 writes the row's loss log(sum) - (z[label] - max)
// in double to a scratch buffer. A single block then adds the per-row losses (strided
// partials, then a fixed shared-memory tree) and writes the mean: deterministic, no atomics.
// Labels are checked first by launchLabelCheck (elementwise.cu) into a device flag; when it
// is set these kernels write nothing and the backend reports the error on the stream. A row
// labelled kIgnoredLabel (-1) has no target: its loss is 0 and its gradient row 0, while the
// mean still divides by every row.
// Sigmoid CE forward: one warp per row as above; each lane sums its elements' terms
// max(z, 0) - z t + log1p(exp(-|z|)) in double, the warp adds them by shuffles, lane 0 writes
// the row's sum; then the same single-block mean. The CPU sums a row in column order, so the
// loss agrees with it to double rounding, not bit for bit (probs agree to expf's few ulp).
// MSE forward: fixed chunks of kMseChunk elements per block (fixed by n, never by the
// device) summed in double, then the same single-block mean.
// exp(x) is taken as 0 below -87, as the CPU kernels do (no denormal probabilities).
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

constexpr int kRowsPerBlock = 8;       // softmax: one warp per row
constexpr int kReduceThreads = 256;    // power of two: the tree below relies on it
constexpr int64_t kMseChunk = 4096;    // elements per MSE partial
constexpr unsigned kFullMask = 0xffffffffu;

// e^x for x <= 0 as the CPU computes it: 0 below -87, NaN stays NaN.
__device__ __forceinline__ float expNonPositive(float x) { return x < -87.0f ? 0.0f : expf(x); }

// probs and per-row losses. A warp returns as a whole (row is uniform in the warp), so the
// full-mask shuffles always see all 32 lanes.
__global__ void softmaxRowsKernel(const float* logits, const int32_t* labels, float* probs,
                                  double* rowLoss, int64_t rows, int64_t classes,
                                  const int* flag) {
  if (*flag) return;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;
  const float* z = logits + row * classes;
  float* p = probs + row * classes;

  float m = -INFINITY;  // NaNs are skipped, as in the CPU's max
  for (int64_t c = lane; c < classes; c += 32) {
    const float v = z[c];
    m = v > m ? v : m;
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) {
    const float o = __shfl_xor_sync(kFullMask, m, off);
    m = o > m ? o : m;
  }

  double sum = 0.0;
  for (int64_t c = lane; c < classes; c += 32) {
    const float e = expNonPositive(__fsub_rn(z[c], m));
    p[c] = e;
    sum += e;
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) sum += __shfl_down_sync(kFullMask, sum, off);
  sum = __shfl_sync(kFullMask, sum, 0);

  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t c = lane; c < classes; c += 32) p[c] = __fmul_rn(p[c], inv);
  if (lane == 0) {
    // -log p[label] = log(sum) - (z[label] - max): finite even when p[label] underflows.
    const int32_t label = labels[row];  // in range or ignored: checked by the flag
    rowLoss[row] = label == kIgnoredLabel
                       ? 0.0
                       : log(sum) - (static_cast<double>(z[label]) - static_cast<double>(m));
  }
}

// *out = sum(values[0, count)) / divisor (0 when divisor == 0), one block of kReduceThreads.
// Skipped when flag is given and set.
__global__ void meanKernel(const double* values, int64_t count, double divisor, float* out,
                           const int* flag) {
  if (flag && *flag) return;
  __shared__ double s[kReduceThreads];
  const int tid = threadIdx.x;
  double acc = 0.0;
  for (int64_t i = tid; i < count; i += kReduceThreads) acc += values[i];
  s[tid] = acc;
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride /= 2) {
    if (tid < stride) s[tid] += s[tid + stride];
    __syncthreads();
  }
  if (tid == 0) *out = divisor > 0.0 ? static_cast<float>(s[0] / divisor) : 0.0f;
}

// dlogits = k * (probs - onehot(labels)); dlogits may alias probs (same element).
__global__ void softmaxCrossEntropyBackwardKernel(const float* probs, const int32_t* labels,
                                                  float* dlogits, int64_t rows, int64_t classes,
                                                  float k) {
  const int64_t n = rows * classes;
  for (int64_t i = firstIndex(); i < n; i += gridStep()) {
    const int64_t r = i / classes, c = i - r * classes;
    const float p = probs[i];
    const int32_t label = labels[r];
    const bool hit = label >= 0 && label < classes && label == c;  // never out of bounds
    dlogits[i] = label == kIgnoredLabel ? 0.0f
                 : hit                  ? __fmul_rn(k, __fsub_rn(p, 1.0f))
                                        : __fmul_rn(k, p);
  }
}

// probs = sigmoid(logits) and per-row sums of the binary cross-entropy from the logits, one
// warp per row (a warp returns as a whole, so the shuffles see all 32 lanes).
__global__ void sigmoidRowsKernel(const float* __restrict__ logits,
                                  const float* __restrict__ targets, float* __restrict__ probs,
                                  double* __restrict__ rowLoss, int64_t rows, int64_t cols) {
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= rows) return;
  const float* z = logits + row * cols;
  const float* t = targets + row * cols;
  float* p = probs + row * cols;
  double sum = 0.0;
  for (int64_t k = lane; k < cols; k += 32) {
    const float zf = z[k];
    p[k] = activate(static_cast<int>(Activation::Sigmoid), zf);
    const double zv = zf, tv = t[k];
    sum += ((zv > 0.0 ? zv : 0.0) - zv * tv) + log1p(exp(-fabs(zv)));
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) sum += __shfl_down_sync(kFullMask, sum, off);
  if (lane == 0) rowLoss[row] = sum;
}

// dlogits = scale * (probs - targets); dlogits may alias probs or targets (same element).
__global__ void sigmoidCrossEntropyBackwardKernel(const float* probs, const float* targets,
                                                  float* dlogits, int64_t n, float scale) {
  for (int64_t i = firstIndex(); i < n; i += gridStep())
    dlogits[i] = __fmul_rn(scale, __fsub_rn(probs[i], targets[i]));
}

// partials[b] = sum over chunk b of (pred - target)^2, in double.
__global__ void squaredErrorPartialsKernel(const float* pred, const float* target, int64_t n,
                                           double* partials) {
  __shared__ double s[kReduceThreads];
  const int tid = threadIdx.x;
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * kMseChunk;
  const int64_t end = begin + kMseChunk < n ? begin + kMseChunk : n;
  double acc = 0.0;
  for (int64_t i = begin + tid; i < end; i += kReduceThreads) {
    const double d = static_cast<double>(pred[i]) - static_cast<double>(target[i]);
    acc += d * d;
  }
  s[tid] = acc;
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride /= 2) {
    if (tid < stride) s[tid] += s[tid + stride];
    __syncthreads();
  }
  if (tid == 0) partials[blockIdx.x] = s[0];
}

// dpred = k * (pred - target); dpred may alias pred or target (same element).
__global__ void mseBackwardKernel(const float* pred, const float* target, float* dpred, int64_t n,
                                  float k) {
  for (int64_t i = firstIndex(); i < n; i += gridStep())
    dpred[i] = __fmul_rn(k, __fsub_rn(pred[i], target[i]));
}

}  // namespace

// ============================================================================================
// launchers
// ============================================================================================

void launchSoftmaxCrossEntropyForward(cudaStream_t stream, const float* logits,
                                      const int32_t* labels, float* probs, float* loss,
                                      int64_t rows, int64_t classes, double* rowLoss,
                                      const int* flag) {
  if (rows > 0 && classes > 0) {
    const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
    SG_LAUNCH(static_cast<unsigned>(blocks), kRowsPerBlock * 32, 0, stream, softmaxRowsKernel)(
      logits, labels, probs, rowLoss, rows, classes, flag);
    CUDA_CHECK_LAUNCH();
  }
  // rows == 0: loss = 0, as the CPU. classes == 0 with rows > 0 sets the flag unless every
  // label is ignored; then no row was written and none is summed: loss = 0, as the CPU.
  SG_LAUNCH(1, kReduceThreads, 0, stream, meanKernel)(rowLoss,
      rows > 0 && classes > 0 ? rows : 0, static_cast<double>(rows > 0 ? rows : 0), loss, flag);
  CUDA_CHECK_LAUNCH();
}

void launchSoftmaxCrossEntropyBackward(cudaStream_t stream, const float* probs,
                                       const int32_t* labels, float* dlogits, int64_t rows,
                                       int64_t classes, float scale) {
  if (rows <= 0 || classes <= 0) return;
  const float k = static_cast<float>(static_cast<double>(scale) / static_cast<double>(rows));
  const int64_t n = rows * classes;
  SG_LAUNCH(gridFor(n), kBlock, 0, stream, softmaxCrossEntropyBackwardKernel)(probs, labels,
      dlogits, rows, classes, k);
  CUDA_CHECK_LAUNCH();
}

void launchSigmoidCrossEntropyForward(cudaStream_t stream, const float* logits,
                                      const float* targets, float* probs, float* loss,
                                      int64_t rows, int64_t cols, double* rowLoss) {
  if (rows > 0 && cols > 0) {
    const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
    SG_LAUNCH(static_cast<unsigned>(blocks), kRowsPerBlock * 32, 0, stream, sigmoidRowsKernel)(
      logits, targets, probs, rowLoss, rows, cols);
    CUDA_CHECK_LAUNCH();
  }
  // rows == 0: loss = 0, as the CPU; cols == 0: rows of no terms, loss = 0 too.
  const int64_t summed = rows > 0 && cols > 0 ? rows : 0;
  SG_LAUNCH(1, kReduceThreads, 0, stream, meanKernel)(rowLoss, summed,
      static_cast<double>(summed), loss, nullptr);
  CUDA_CHECK_LAUNCH();
}

void launchSigmoidCrossEntropyBackward(cudaStream_t stream, const float* probs,
                                       const float* targets, float* dlogits, int64_t n,
                                       float scale) {
  if (n <= 0) return;
  SG_LAUNCH(gridFor(n), kBlock, 0, stream, sigmoidCrossEntropyBackwardKernel)(probs, targets,
      dlogits, n, scale);
  CUDA_CHECK_LAUNCH();
}

size_t mseScratchCount(int64_t n) {
  return n > 0 ? static_cast<size_t>((n + kMseChunk - 1) / kMseChunk) : 1;
}

void launchMseForward(cudaStream_t stream, const float* pred, const float* target, float* loss,
                      int64_t n, double* partials) {
  int64_t parts = 0;
  if (n > 0) {
    parts = (n + kMseChunk - 1) / kMseChunk;
    SG_LAUNCH(static_cast<unsigned>(parts), kReduceThreads, 0, stream, squaredErrorPartialsKernel)(
      pred, target, n, partials);
    CUDA_CHECK_LAUNCH();
  }
  // n == 0: loss = 0, as the CPU.
  SG_LAUNCH(1, kReduceThreads, 0, stream, meanKernel)(partials, parts,
      static_cast<double>(n > 0 ? n : 0), loss, nullptr);
  CUDA_CHECK_LAUNCH();
}

void launchMseBackward(cudaStream_t stream, const float* pred, const float* target, float* dpred,
                       int64_t n, float scale) {
  if (n <= 0) return;
  const float k = static_cast<float>(2.0 * static_cast<double>(scale) / static_cast<double>(n));
  SG_LAUNCH(gridFor(n), kBlock, 0, stream, mseBackwardKernel)(pred, target, dpred, n, k);
  CUDA_CHECK_LAUNCH();
}

}  // namespace sg::cuda
