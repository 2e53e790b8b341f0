// Optimizer steps with PyTorch semantics (see native/cpu/kernels.h): SGD with optional
// momentum, Adam with bias correction; per tensor, or per parameter group in one launch with
// the step-dependent scalars read from device memory (what a captured graph needs).
//
// Element-wise kernels. The bias-correction constants of Adam are computed on
// the host in double exactly as the CPU does, then rounded to float; the per-element
// arithmetic uses explicit roundings (no FMA contraction, IEEE sqrt and division) in the
// CPU's order of operations, so the results match the CPU bit for bit.
// Group launches: up to 32 non-empty tensors per launch, one block of 256 threads per chunk
// of 1024 elements, 4 consecutive elements per thread (float4 when aligned); see common.cuh.
#include <algorithm>
#include <cmath>
#include <cstdint>

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

// One element of SGD: g' = g + wd p; without momentum (velocity null) p -= lr g'; with it
// v = momentum v + g', p -= lr v.
__device__ __forceinline__ void sgdElement(float* param, const float* grad, float* velocity,
                                           int64_t i, float lr, float momentum,
                                           float weightDecay) {
  const float p = param[i];
  const float g = __fadd_rn(grad[i], __fmul_rn(weightDecay, p));
  if (velocity) {
    const float v = __fadd_rn(__fmul_rn(momentum, velocity[i]), g);
    velocity[i] = v;
    param[i] = __fsub_rn(p, __fmul_rn(lr, v));
  } else {
    param[i] = __fsub_rn(p, __fmul_rn(lr, g));
  }
}

// One element of Adam: m = b1 m + c1 g'; v = b2 v + c2 g'^2;
// p -= stepSize * (m / (sqrt(v) / bc2Sqrt + eps)).
__device__ __forceinline__ void adamElement(float* param, const float* grad, float* m, float* v,
                                            int64_t i, float beta1, float beta2, float c1,
                                            float c2, float eps, float weightDecay,
                                            float stepSize, float bc2Sqrt) {
  const float p = param[i];
  const float g = __fadd_rn(grad[i], __fmul_rn(weightDecay, p));
  const float mi = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(c1, g));
  const float vi = __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(c2, __fmul_rn(g, g)));
  m[i] = mi;
  v[i] = vi;
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2Sqrt), eps);
  param[i] = __fsub_rn(p, __fmul_rn(stepSize, __fdiv_rn(mi, denom)));
}

__global__ void sgdKernel(float* param, const float* grad, float* velocity, int64_t n, float lr,
                          float momentum, float weightDecay, bool useMomentum) {
  for (int64_t i = firstIndex(); i < n; i += gridStep())
    sgdElement(param, grad, useMomentum ? velocity : nullptr, i, lr, momentum, weightDecay);
}

__global__ void adamKernel(float* param, const float* grad, float* m, float* v, int64_t n,
                           float beta1, float beta2, float c1, float c2, float eps,
                           float weightDecay, float stepSize, float bc2Sqrt) {
  for (int64_t i = firstIndex(); i < n; i += gridStep())
    adamElement(param, grad, m, v, i, beta1, beta2, c1, c2, eps, weightDecay, stepSize, bc2Sqrt);
}

// The tensor and chunk of a group kernel's block (a linear scan over <= 32 tensors).
__device__ __forceinline__ int groupTensor(const GroupArgs& a, int64_t* begin, int64_t* end) {
  const int b = static_cast<int>(blockIdx.x);
  int t = 0;
  while (t + 1 < a.count && a.firstBlock[t + 1] <= b) ++t;
  *begin = static_cast<int64_t>(b - a.firstBlock[t]) * kGroupChunk;
  *end = *begin + kGroupChunk < a.n[t] ? *begin + kGroupChunk : a.n[t];
  return t;
}

// One group block: thread x takes the 4 elements begin + 4x .. +3 of its tensor's chunk
// (kGroupChunk = 4 * kBlock), as float4 loads and stores when all 4 are in range and the
// tensor's buffers are 16-byte aligned (bit t of a.aligned; chunks start at multiples of 4),
// element by element otherwise. `step(p, g, s0, s1, j)` updates element j of the 4 (s0, s1
// null when the tensor has no such state). The gradients are zeroed.
template <class Step>
__device__ __forceinline__ void groupChunk(const GroupArgs& a, Step step) {
  int64_t begin, end;
  const int t = groupTensor(a, &begin, &end);
  const int64_t i = begin + 4 * static_cast<int64_t>(threadIdx.x);
  if (i >= end) return;
  float* const param = a.param[t];
  float* const grad = a.grad[t];
  float* const st0 = a.state0[t];
  float* const st1 = a.state1[t];
  float p[4] = {}, g[4] = {}, s0[4] = {}, s1[4] = {};
  const int count = end - i < 4 ? static_cast<int>(end - i) : 4;
  const bool vec = count == 4 && ((a.aligned >> t) & 1u);
  if (vec) {
    *reinterpret_cast<float4*>(p) = *reinterpret_cast<const float4*>(param + i);
    *reinterpret_cast<float4*>(g) = *reinterpret_cast<const float4*>(grad + i);
    if (st0) *reinterpret_cast<float4*>(s0) = *reinterpret_cast<const float4*>(st0 + i);
    if (st1) *reinterpret_cast<float4*>(s1) = *reinterpret_cast<const float4*>(st1 + i);
  } else {
    for (int j = 0; j < count; ++j) {
      p[j] = param[i + j];
      g[j] = grad[i + j];
      if (st0) s0[j] = st0[i + j];
      if (st1) s1[j] = st1[i + j];
    }
  }
#pragma unroll
  for (int j = 0; j < 4; ++j)
    if (j < count) step(p, g, st0 ? s0 : nullptr, st1 ? s1 : nullptr, j);
  if (vec) {
    *reinterpret_cast<float4*>(param + i) = *reinterpret_cast<const float4*>(p);
    *reinterpret_cast<float4*>(grad + i) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (st0) *reinterpret_cast<float4*>(st0 + i) = *reinterpret_cast<const float4*>(s0);
    if (st1) *reinterpret_cast<float4*>(st1 + i) = *reinterpret_cast<const float4*>(s1);
  } else {
    for (int j = 0; j < count; ++j) {
      param[i + j] = p[j];
      grad[i + j] = 0.0f;
      if (st0) st0[i + j] = s0[j];
      if (st1) st1[i + j] = s1[j];
    }
  }
}

// sgdKernel over a group, lr = hyper[0]; zeroes the gradients.
__global__ void sgdGroupKernel(GroupArgs a, const float* hyper, float momentum,
                               float weightDecay) {
  const float lr = hyper[0];
  groupChunk(a, [&](float* p, const float* g, float* v, float*, int j) {
    sgdElement(p, g, v, j, lr, momentum, weightDecay);
  });
}

// adamKernel over a group, stepSize = hyper[0], bc2Sqrt = hyper[1]; zeroes the gradients.
__global__ void adamGroupKernel(GroupArgs a, const float* hyper, float beta1, float beta2,
                                float c1, float c2, float eps, float weightDecay) {
  const float stepSize = hyper[0], bc2Sqrt = hyper[1];
  groupChunk(a, [&](float* p, const float* g, float* m, float* v, int j) {
    adamElement(p, g, m, v, j, beta1, beta2, c1, c2, eps, weightDecay, stepSize, bc2Sqrt);
  });
}

__global__ void writeScalarsKernel(float* y, ScalarArgs values) {
  const int i = static_cast<int>(threadIdx.x);
  if (i < values.n) y[i] = values.v[i];
}

}  // namespace

// ============================================================================================
// launchers
// ============================================================================================

void launchSgdStep(cudaStream_t stream, float* param, const float* grad, float* velocity,
                   int64_t n, float lr, float momentum, float weightDecay) {
  if (n <= 0) return;
  const bool useMomentum = momentum != 0.0f;
  SG_LAUNCH(gridFor(n), kBlock, 0, stream, sgdKernel)(param, grad, useMomentum ? velocity : nullptr,
      n, lr, momentum, weightDecay, useMomentum);
  CUDA_CHECK_LAUNCH();
}

void launchAdamStep(cudaStream_t stream, float* param, const float* grad, float* m, float* v,
                    int64_t n, float lr, float beta1, float beta2, float eps, float weightDecay,
                    int64_t step) {
  if (n <= 0) return;
  const AdamScalars sc = adamScalars(lr, beta1, beta2, step);
  const float stepSize = sc.stepSize, bc2Sqrt = sc.bc2Sqrt;
  const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
  SG_LAUNCH(gridFor(n), kBlock, 0, stream, adamKernel)(param, grad, m, v, n, beta1, beta2, c1, c2,
      eps, weightDecay, stepSize, bc2Sqrt);
  CUDA_CHECK_LAUNCH();
}

namespace {

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Launches `body(args, blocks)` once per kGroupTensors non-empty tensors of the group, in
// order; empty tensors are skipped (they take no slot and no block). Every non-empty tensor
// is in exactly one launch: the packing resumes where the previous launch stopped.
template <class Body>
void forEachLaunch(const std::vector<GroupTensor>& group, Body body) {
  size_t k = 0;
  while (k < group.size()) {
    GroupArgs a{};
    int blocks = 0;
    for (; k < group.size() && a.count < kGroupTensors; ++k) {
      const GroupTensor& t = group[k];
      if (t.n <= 0) continue;
      const int c = a.count++;
      a.param[c] = t.param;
      a.grad[c] = t.grad;
      a.state0[c] = t.state0;
      a.state1[c] = t.state1;
      a.n[c] = t.n;
      a.firstBlock[c] = blocks;
      const bool aligned = aligned16(t.param) && aligned16(t.grad) &&
                           (!t.state0 || aligned16(t.state0)) &&
                           (!t.state1 || aligned16(t.state1));
      if (aligned) a.aligned |= 1u << c;
      blocks += static_cast<int>((t.n + kGroupChunk - 1) / kGroupChunk);
    }
    a.firstBlock[a.count] = blocks;
    if (blocks > 0) body(a, blocks);
  }
}

}  // namespace

void launchSgdStepGroup(cudaStream_t stream, const std::vector<GroupTensor>& group,
                        const float* hyper, float momentum, float weightDecay) {
  forEachLaunch(group, [&](const GroupArgs& a, int blocks) {
    SG_LAUNCH(blocks, kBlock, 0, stream, sgdGroupKernel)(a, hyper, momentum, weightDecay);
    CUDA_CHECK_LAUNCH();
  });
}

void launchAdamStepGroup(cudaStream_t stream, const std::vector<GroupTensor>& group,
                         const float* hyper, float beta1, float beta2, float eps,
                         float weightDecay) {
  const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
  forEachLaunch(group, [&](const GroupArgs& a, int blocks) {
    SG_LAUNCH(blocks, kBlock, 0, stream, adamGroupKernel)(a, hyper, beta1, beta2, c1, c2, eps,
        weightDecay);
    CUDA_CHECK_LAUNCH();
  });
}

void launchWriteScalars(cudaStream_t stream, float* y, const std::vector<float>& values) {
  ScalarArgs a{};
  a.n = static_cast<int>(std::min<size_t>(values.size(), 16));
  for (int i = 0; i < a.n; ++i) a.v[i] = values[i];
  SG_LAUNCH(1, 32, 0, stream, writeScalarsKernel)(y, a);
  CUDA_CHECK_LAUNCH();
}

}  // namespace sg::cuda
