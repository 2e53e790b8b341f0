// The CPU GEMM with an epilogue (gemm.cpp): a Linear layer's forward, y = act(x W^T + b), in
// one pass over y. (The plain sgemm is declared in kernels.h.)
#pragma once
#include <cstdint>

namespace sg::cpu {

// Applied to each tile of C as soon as its full K sum is stored (alpha and beta applied),
// while the tile is still in the L1 cache: first C[i, j] += bias[j] (bias null: skipped),
// then rowMap(context, row, n) in place on each of the tile's row segments (null: skipped).
// The result is that of sgemm, then the bias pass, then rowMap over each row: rowMap must
// act element by element (a segment's length and position must not change its values) and
// may run on several of the GEMM's threads at once.
struct GemmEpilogue {
  const float* bias = nullptr;
  void (*rowMap)(const void* context, float* row, int64_t n) = nullptr;
  const void* context = nullptr;
};

// sgemm (kernels.h) followed by `epilogue` on C[M, N].
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc, const GemmEpilogue& epilogue);

}  // namespace sg::cpu
