// SGEMM of the CUDA backend (gemm.cu): C = alpha op(A) op(B) + beta C, row-major, written
// here (no cuBLAS). Exact fp32 FMA accumulation by default; TF32 tensor cores on request.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace sg::cuda {

// Process-wide switch: true routes every later sgemm on sm_80+ devices to the TF32
// tensor-core kernel (about 10 mantissa bits per product: NOT within 1e-5 of the CPU).
// Default false. Takes effect for launches made after the call.
void setGemmTf32(bool enabled);
bool gemmTf32();

// C[M,N] = alpha * op(A) * op(B) + beta * C with the conventions of cpu::sgemm:
// A is [M,K] (or [K,M] when transA), B is [K,N] (or [N,K] when transB), lda/ldb/ldc are row
// strides in elements. beta == 0 ignores C's old contents. M, N, K must be < 2^31.
// `numSMs` picks the tile size; `tf32Capable` (compute capability >= 8.0) allows the TF32
// kernel when the switch is on. Then, when given, C[m,n] = act(C[m,n] + bias[n]) with
// `activation` an sg::Activation code (-1: none): a Linear layer's forward in one kernel.
// Enqueued on `stream`; throws std::runtime_error on failure.
// `workspace` (sgemmWorkspaceFloats floats; may be null when that is 0) lets a product too
// small to cover the SMs split K across blocks (see gemm.cu); without it the product is not
// split. The split depends on the shape and numSMs only: deterministic on a given device.
void launchSgemm(cudaStream_t stream, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                 float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                 float beta, float* C, int64_t ldc, int numSMs, bool tf32Capable,
                 const float* bias = nullptr, int activation = -1, float* workspace = nullptr);

// Scratch floats launchSgemm can use for the same arguments (0: it will not split K); the
// same for the fp32 and the TF32 kernel (`tf32Capable` is not used).
size_t sgemmWorkspaceFloats(int64_t M, int64_t N, int64_t K, int numSMs, bool tf32Capable);

}  // namespace sg::cuda
