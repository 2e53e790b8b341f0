// AVX-512 SGEMM micro-kernel. Compiled with
//   -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma
// and nothing else lives here: the rest of the library must run on CPUs without AVX-512.
//
// Tile: 14 rows x 32 columns of C held in 28 zmm accumulators. Per k it loads two 16-float
// vectors of the packed B row, broadcasts each of the 14 packed A values and issues 28
// independent FMAs; with 2 B registers and 1-2 broadcast temporaries that uses the 32 zmm
// registers without spilling. 28 independent chains cover the FMA latency (4 cycles) times
// the two FMA pipes of Zen 4/5 and Intel server cores with room to spare, and 16 loads per
// 28 FMAs stays well below the load ports' throughput.
#include "gemm_kernels.h"

#if defined(__AVX512F__) && defined(__FMA__)
#include <immintrin.h>

namespace sg::cpu::gemm_detail {
namespace {

constexpr int kRows = kAvx512Tile.mr;
constexpr int kCols = kAvx512Tile.nr;
constexpr int kVectors = kCols / 16;  // 16-float vectors per row of the tile
static_assert(kCols % 16 == 0, "the tile is whole zmm vectors wide");
// How far ahead (in k steps) the B stream is prefetched; the A stream is short enough that
// the hardware prefetcher keeps up with it.
constexpr int kPrefetchB = 8;

// Mask of the first `n` lanes (n clamped to [0, 16]).
inline __mmask16 firstLanes(int n) {
  if (n >= 16) return 0xFFFF;
  if (n <= 0) return 0;
  return static_cast<__mmask16>((1u << n) - 1u);
}

void microKernel(int64_t kc, const float* __restrict packedA, const float* __restrict packedB,
                 float* __restrict c, int64_t ldc, int rows, int cols, float alpha, float beta) {
  __m512 acc[kRows][kVectors];
#pragma GCC unroll 32
  for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm512_setzero_ps();

  // Pull the C tile towards L1 while the k loop runs, so the epilogue does not stall.
  for (int r = 0; r < rows; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + kCols - 1), _MM_HINT_T0);
  }

  const float* a = packedA;
  const float* b = packedB;
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bRow[kVectors];
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) bRow[v] = _mm512_load_ps(b + 16 * v);
    _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchB * kCols), _MM_HINT_T0);
#pragma GCC unroll 32
    for (int r = 0; r < kRows; ++r) {
      const __m512 aValue = _mm512_set1_ps(a[r]);
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) acc[r][v] = _mm512_fmadd_ps(aValue, bRow[v], acc[r][v]);
    }
    a += kRows;
    b += kCols;
  }

  const __m512 alphaV = _mm512_set1_ps(alpha);
  const __m512 betaV = _mm512_set1_ps(beta);
  if (rows == kRows && cols == kCols) {
#pragma GCC unroll 32
    for (int r = 0; r < kRows; ++r) {
      float* cRow = c + r * ldc;
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) {
        __m512 out = _mm512_mul_ps(alphaV, acc[r][v]);
        if (beta != 0.0f)
          out = _mm512_fmadd_ps(betaV, _mm512_loadu_ps(cRow + 16 * v), out);
        _mm512_storeu_ps(cRow + 16 * v, out);
      }
    }
    return;
  }
  // Edge tile: masked loads never touch memory outside the rows x cols window.
  __mmask16 mask[kVectors];
#pragma GCC unroll 4
  for (int v = 0; v < kVectors; ++v) mask[v] = firstLanes(cols - 16 * v);
#pragma GCC unroll 32
  for (int r = 0; r < kRows; ++r) {
    if (r >= rows) break;
    float* cRow = c + r * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) {
      __m512 out = _mm512_mul_ps(alphaV, acc[r][v]);
      if (beta != 0.0f)
        out = _mm512_fmadd_ps(betaV, _mm512_maskz_loadu_ps(mask[v], cRow + 16 * v), out);
      _mm512_mask_storeu_ps(cRow + 16 * v, mask[v], out);
    }
  }
}

constexpr MicroKernel kKernel{"avx512", kAvx512Tile, microKernel};

}  // namespace

const MicroKernel* avx512MicroKernel() { return &kKernel; }

}  // namespace sg::cpu::gemm_detail

#else  // built without AVX-512 flags: this path is simply unavailable

namespace sg::cpu::gemm_detail {
const MicroKernel* avx512MicroKernel() { return nullptr; }
}  // namespace sg::cpu::gemm_detail

#endif
