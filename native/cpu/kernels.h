// CPU kernels: plain functions on raw, contiguous, row-major float32/int32 buffers.
//
// They know nothing of tensors, streams or Node.js: the CPU backend checks shapes and runs
// them on a pool thread, as a stream's task. Large loops split work with sg::parallelFor.
// Conventions (the same for the CUDA kernels):
//   - parameter gradients ACCUMULATE (+=): dW, db, dgamma, dbeta;
//   - activation gradients OVERWRITE (=): dx;
//   - reductions combine fixed-size chunks in a fixed order, so results do not depend on the
//     number of threads.
#pragma once
#include <cstdint>

#include "../core/op_types.h"

namespace sg::cpu {

// Shared with the CUDA kernels through core (core/op_types.h).
using sg::Activation;
using sg::AdamScalars;
using sg::adamScalars;

// ---- GEMM (gemm.cpp) -------------------------------------------------------------------
// C[M,N] = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T; lda/ldb/ldc are row strides.
// A is [M,K] (or [K,M] when transA), B is [K,N] (or [N,K] when transB).
// beta == 0 ignores C's old contents (NaN in C does not propagate).
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

// The length of the consecutive slices in which sgemm sums an inner dimension of K: each
// slice's products go in order into a fresh accumulator, which is then added to C (the first
// slice to beta * C), slice after slice. Callers that split a long inner dimension themselves
// (the convolution's filter gradient) cut it at these points to keep sgemm's rounding.
int64_t sgemmDepthSlice(int64_t K);

// Which SIMD path sgemm uses on this CPU: "avx512", "avx2" or "generic".
const char* sgemmIsa();

// ---- the other kernels (kernels_body.inc, compiled once per ISA) -------------------------
// Parameter tensors of one optimizer step over a group (sgdStepGroup, adamStepGroup): state0
// is the SGD velocity (null without momentum) or Adam's m, state1 Adam's v.
struct GroupTensor {
  float* param;
  float* grad;
  float* state0;
  float* state1;
  int64_t n;
};

#include "kernels_api.inc"

// The instruction set the kernels above run with: "avx512", "avx2" or "generic". The same
// choice as sgemmIsa() (CPUID, or SYNTHGRAD_SGEMM_ISA, which forces both), reported by the
// code that runs: each per-ISA translation unit says what its compiler flags gave it.
const char* kernelsIsa();

}  // namespace sg::cpu
