// Optimizer steps, one launch per parameter tensor, with PyTorch semantics (see
// native/cpu/kernels.h): SGD with optional momentum, Adam with bias correction.
//
// Element-wise grid-stride kernels. The bias-correction constants of Adam are computed on
// the host in double exactly as the CPU does, then rounded to float; the per-element
// arithmetic uses explicit roundings (no FMA contraction, IEEE sqrt and division) in the
// CPU's order of operations, so the results match the CPU bit for bit.
#include <algorithm>
#include <cmath>

#include "check.cuh"
#include "common.cuh"
#include "kernels.cuh"

namespace sg::cuda {
namespace {

// ============================================================================================
// kernels
// ============================================================================================

// g' = g + wd p;  without momentum: p -= lr g';  with: v = momentum v + g', p -= lr v.
__global__ void sgdKernel(float* param, const float* grad, float* velocity, int64_t n, float lr,
                          float momentum, float weightDecay, bool useMomentum) {
  for (int64_t i = firstIndex(); i < n; i += gridStep()) {
    const float p = param[i];
    const float g = __fadd_rn(grad[i], __fmul_rn(weightDecay, p));
    if (useMomentum) {
      const float v = __fadd_rn(__fmul_rn(momentum, velocity[i]), g);
      velocity[i] = v;
      param[i] = __fsub_rn(p, __fmul_rn(lr, v));
    } else {
      param[i] = __fsub_rn(p, __fmul_rn(lr, g));
    }
  }
}

// m = b1 m + c1 g'; v = b2 v + c2 g'^2; p -= stepSize * (m / (sqrt(v) / bc2Sqrt + eps)).
__global__ void adamKernel(float* param, const float* grad, float* m, float* v, int64_t n,
                           float beta1, float beta2, float c1, float c2, float eps,
                           float weightDecay, float stepSize, float bc2Sqrt) {
  for (int64_t i = firstIndex(); i < n; i += gridStep()) {
    const float p = param[i];
    const float g = __fadd_rn(grad[i], __fmul_rn(weightDecay, p));
    const float mi = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(c1, g));
    const float vi = __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(c2, __fmul_rn(g, g)));
    m[i] = mi;
    v[i] = vi;
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2Sqrt), eps);
    param[i] = __fsub_rn(p, __fmul_rn(stepSize, __fdiv_rn(mi, denom)));
  }
}

}  // namespace

// ============================================================================================
// launchers
// ============================================================================================

void launchSgdStep(cudaStream_t stream, float* param, const float* grad, float* velocity,
                   int64_t n, float lr, float momentum, float weightDecay) {
  if (n <= 0) return;
  const bool useMomentum = momentum != 0.0f;
  sgdKernel<<<gridFor(n), kBlock, 0, stream>>>(param, grad, useMomentum ? velocity : nullptr, n,
                                               lr, momentum, weightDecay, useMomentum);
  CUDA_CHECK_LAUNCH();
}

void launchAdamStep(cudaStream_t stream, float* param, const float* grad, float* m, float* v,
                    int64_t n, float lr, float beta1, float beta2, float eps, float weightDecay,
                    int64_t step) {
  if (n <= 0) return;
  // As cpu::adamStep: stepSize = lr / (1 - b1^t), bc2Sqrt = sqrt(1 - b2^t), in double.
  const double t = static_cast<double>(std::max<int64_t>(1, step));
  const float stepSize = static_cast<float>(static_cast<double>(lr) /
                                            (1.0 - std::pow(static_cast<double>(beta1), t)));
  const float bc2Sqrt =
      static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(beta2), t)));
  const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
  adamKernel<<<gridFor(n), kBlock, 0, stream>>>(param, grad, m, v, n, beta1, beta2, c1, c2, eps,
                                                weightDecay, stepSize, bc2Sqrt);
  CUDA_CHECK_LAUNCH();
}

}  // namespace sg::cuda
