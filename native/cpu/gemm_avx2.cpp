// AVX2 + FMA SGEMM micro-kernel. Compiled with
//   -mavx2 -mfma
// and nothing else lives here: the rest of the library must run on CPUs without AVX2.
//
// Tile: 6 rows x 16 columns of C in 12 ymm accumulators. Per k it loads two 8-float vectors
// of the packed B row and broadcasts each of the 6 packed A values: 12 accumulators + 2 B
// + 1 broadcast = 15 of the 16 ymm registers, no spills. 12 independent FMA chains cover
// the FMA latency (4-5 cycles) times two FMA pipes on Haswell and later and on Zen.
#include "gemm_kernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include <utility>

namespace sg::cpu::gemm_detail {
namespace {

constexpr int kRows = kAvx2Tile.mr;
constexpr int kCols = kAvx2Tile.nr;
constexpr int kVectors = kCols / 8;  // 8-float vectors per row of the tile
static_assert(kCols % 8 == 0, "the tile is whole ymm vectors wide");
constexpr int kPrefetchB = 8;  // k steps of lookahead on the B stream

// Lane mask (all-ones lanes) for the first `n` of 8 lanes, n clamped to [0, 8].
inline __m256i firstLanes(int n) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
}

// Computes a Rows x (8 * Vectors) corner of the tile (Rows <= kRows, Vectors <= kVectors);
// edge tiles use the smallest variant covering them. Each element gets exactly the same
// sequence of FMAs whichever variant computes it and wherever its operands are read from.
template <int Rows, int Vectors, AOrder Order, bool BPacked>
void tileKernel(int64_t kc, const TileInputs& in, float* __restrict c, int64_t ldc, int cols,
                float alpha, float beta) {
  __m256 acc[Rows][Vectors];
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < Vectors; ++v) acc[r][v] = _mm256_setzero_ps();

#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 8 * Vectors - 1), _MM_HINT_T0);
  }

  // Only the last vector of a row can be partial.
  const int lastCols = cols - 8 * (Vectors - 1);
  const __m256i lastMask = firstLanes(lastCols);
  const float* __restrict a = in.a;
  const float* __restrict b = in.b;
  const int64_t aStep = Order == AOrder::Packed         ? kRows
                        : Order == AOrder::RowsAdjacent ? in.aStride
                                                        : 1;
  const int64_t bStep = BPacked ? kCols : in.bStride;
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    __m256 bRow[Vectors];
#pragma GCC unroll 4
    for (int v = 0; v < Vectors; ++v) {
      if (BPacked)
        bRow[v] = _mm256_load_ps(b + 8 * v);
      else if (v + 1 < Vectors)
        bRow[v] = _mm256_loadu_ps(b + 8 * v);
      else  // in place: never read past the last column
        bRow[v] = _mm256_maskload_ps(b + 8 * v, lastMask);
    }
    _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchB * bStep), _MM_HINT_T0);
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) {
      const __m256 aValue =
          _mm256_broadcast_ss(Order == AOrder::KAdjacent ? a + r * in.aStride : a + r);
#pragma GCC unroll 4
      for (int v = 0; v < Vectors; ++v) acc[r][v] = _mm256_fmadd_ps(aValue, bRow[v], acc[r][v]);
    }
    a += aStep;
    b += bStep;
  }

  // C = alpha * acc + beta * C, then + bias
  const __m256 alphaV = _mm256_set1_ps(alpha);
  __m256 biasV[Vectors];
  if (in.bias) {
#pragma GCC unroll 4
    for (int v = 0; v < Vectors; ++v)
      biasV[v] = v + 1 < Vectors ? _mm256_loadu_ps(in.bias + 8 * v)
                                 : _mm256_maskload_ps(in.bias + 8 * v, lastMask);
  }
  const __m256 betaV = _mm256_set1_ps(beta);
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r) {
    float* cRow = c + r * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < Vectors; ++v) {
      __m256 out = _mm256_mul_ps(alphaV, acc[r][v]);
      if (v + 1 < Vectors || lastCols >= 8) {
        if (beta != 0.0f) out = _mm256_fmadd_ps(betaV, _mm256_loadu_ps(cRow + 8 * v), out);
        if (in.bias) out = _mm256_add_ps(out, biasV[v]);
        _mm256_storeu_ps(cRow + 8 * v, out);
      } else {  // masked: never touches memory past the last column
        if (beta != 0.0f)
          out = _mm256_fmadd_ps(betaV, _mm256_maskload_ps(cRow + 8 * v, lastMask), out);
        if (in.bias) out = _mm256_add_ps(out, biasV[v]);
        _mm256_maskstore_ps(cRow + 8 * v, lastMask, out);
      }
    }
  }
}

using TileKernelFn = void (*)(int64_t, const TileInputs&, float*, int64_t, int, float, float);

// Every variant of one operand layout, indexed [(rows - 1) * kVectors + vectors - 1]. Plain
// arrays and internal linkage only: no inline function with external linkage may be emitted
// from this file, or the linker could pick this ISA's copy for the rest of the library.
template <AOrder Order, bool BPacked, class Sequence>
struct TileKernelTable;
template <AOrder Order, bool BPacked, int... I>
struct TileKernelTable<Order, BPacked, std::integer_sequence<int, I...>> {
  static constexpr TileKernelFn kernels[] = {
      &tileKernel<I / kVectors + 1, I % kVectors + 1, Order, BPacked>...};
};
template <AOrder Order, bool BPacked>
using TileKernels =
    TileKernelTable<Order, BPacked, std::make_integer_sequence<int, kRows * kVectors>>;

void microKernel(int64_t kc, const TileInputs& in, float* c, int64_t ldc, int rows, int cols,
                 float alpha, float beta) {
  const int index = (rows - 1) * kVectors + (cols + 7) / 8 - 1;
  TileKernelFn variant;
  if (!in.bPacked)  // the driver reads at most one operand in place
    variant = TileKernels<AOrder::Packed, false>::kernels[index];
  else if (in.aOrder == AOrder::RowsAdjacent)
    variant = TileKernels<AOrder::RowsAdjacent, true>::kernels[index];
  else if (in.aOrder == AOrder::KAdjacent)
    variant = TileKernels<AOrder::KAdjacent, true>::kernels[index];
  else
    variant = TileKernels<AOrder::Packed, true>::kernels[index];
  variant(kc, in, c, ldc, cols, alpha, beta);
}

constexpr MicroKernel kKernel{"avx2", kAvx2Tile, microKernel};

}  // namespace

const MicroKernel* avx2MicroKernel() { return &kKernel; }

}  // namespace sg::cpu::gemm_detail

#else  // built without AVX2/FMA flags: this path is simply unavailable

namespace sg::cpu::gemm_detail {
const MicroKernel* avx2MicroKernel() { return nullptr; }
}  // namespace sg::cpu::gemm_detail

#endif
