// Losses: softmax cross-entropy (forward, backward) and mean squared error (forward,
// backward).
//
// Softmax CE forward: one warp per row. Max by shuffles (exact, the same in every lane), then
// e = exp(z - max) written to probs and summed in double (shuffle tree, then broadcast from
// lane 0), probs scaled by 1/sum, and lane 0 writes the row's loss log(sum) - (z[label] - max)
// in double to a scratch buffer. A single block then adds the per-row losses (strided
// partials, then a fixed shared-memory tree) and writes the mean: deterministic, no atomics.
// Labels are checked first by launchLabelCheck (elementwise.cu) into a device flag; when it
// is set these kernels write nothing and the backend reports the error on the stream.
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
    const int32_t label = labels[row];  // in range: checked by the flag
    rowLoss[row] = log(sum) - (static_cast<double>(z[label]) - static_cast<double>(m));
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
    dlogits[i] = hit ? __fmul_rn(k, __fsub_rn(p, 1.0f)) : __fmul_rn(k, p);
  }
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
  // rows == 0: loss = 0, as the CPU. (classes == 0 with rows > 0 always sets the flag.)
  SG_LAUNCH(1, kReduceThreads, 0, stream, meanKernel)(rowLoss, rows > 0 ? rows : 0,
      static_cast<double>(rows > 0 ? rows : 0), loss, flag);
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
