// AVX-512 SGEMM micro-kernel. Compiled with
//   -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma
// and nothing else lives here: the rest of the library must run on CPUs without AVX-512.
//
// Tile: 14 rows x 32 columns of C held in 28 zmm accumulators. Per k it loads two 16-float
// vectors of the packed B row, broadcasts each of the 14 packed A values and issues 28
// independent FMAs; with 2 B registers and a broadcast temporary that fits the 32 zmm
// registers without spilling. 28 independent chains cover the FMA latency (4 cycles) times
// the two 512-bit FMA pipes of Zen 4/5 with room to spare, and 16 loads per 28 FMAs stay
// well below the load ports' throughput. On Zen 5, 12x32, 8x48, 9x48, 6x64 and 4x64 tiles
// measured the same or slower (wider tiles also waste more on N = 10 or 784).
#include "gemm_kernels.h"

#if defined(__AVX512F__) && defined(__FMA__)
#include <immintrin.h>

#include <utility>

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

// Computes a Rows x (16 * Vectors) corner of the tile (Rows <= kRows, Vectors <= kVectors).
// Edge tiles use the smallest variant that covers them, so a 256-row or 10-column problem
// does not pay for padding; each element still gets exactly the same sequence of FMAs as in
// the full tile, whether its operands come from packed panels or from the matrices.
template <int Rows, int Vectors, AOrder Order, bool BPacked>
void tileKernel(int64_t kc, const TileInputs& in, float* __restrict c, int64_t ldc, int cols,
                float alpha, float beta) {
  __m512 acc[Rows][Vectors];
#pragma GCC unroll 32
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < Vectors; ++v) acc[r][v] = _mm512_setzero_ps();

  // Pull the C tile towards L1 while the k loop runs, so the epilogue does not stall.
#pragma GCC unroll 32
  for (int r = 0; r < Rows; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16 * Vectors - 1), _MM_HINT_T0);
  }

  // Only the last vector of a row can be partial.
  const __mmask16 lastMask = firstLanes(cols - 16 * (Vectors - 1));
  const float* __restrict a = in.a;
  const float* __restrict b = in.b;
  const int64_t aStep = Order == AOrder::Packed         ? kRows
                        : Order == AOrder::RowsAdjacent ? in.aStride
                                                        : 1;
  const int64_t bStep = BPacked ? kCols : in.bStride;
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bRow[Vectors];
#pragma GCC unroll 4
    for (int v = 0; v < Vectors; ++v) {
      if (BPacked)
        bRow[v] = _mm512_load_ps(b + 16 * v);
      else if (v + 1 < Vectors)
        bRow[v] = _mm512_loadu_ps(b + 16 * v);
      else  // in place: never read past the last column
        bRow[v] = _mm512_maskz_loadu_ps(lastMask, b + 16 * v);
    }
    _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchB * bStep), _MM_HINT_T0);
#pragma GCC unroll 32
    for (int r = 0; r < Rows; ++r) {
      const __m512 aValue =
          _mm512_set1_ps(Order == AOrder::KAdjacent ? a[r * in.aStride] : a[r]);
#pragma GCC unroll 4
      for (int v = 0; v < Vectors; ++v) acc[r][v] = _mm512_fmadd_ps(aValue, bRow[v], acc[r][v]);
    }
    a += aStep;
    b += bStep;
  }

  // C = alpha * acc + beta * C, then + bias
  const __m512 alphaV = _mm512_set1_ps(alpha);
  __m512 biasV[Vectors];
  if (in.bias) {
#pragma GCC unroll 4
    for (int v = 0; v < Vectors; ++v)
      biasV[v] = v + 1 < Vectors ? _mm512_loadu_ps(in.bias + 16 * v)
                                 : _mm512_maskz_loadu_ps(lastMask, in.bias + 16 * v);
  }
  const __m512 betaV = _mm512_set1_ps(beta);
#pragma GCC unroll 32
  for (int r = 0; r < Rows; ++r) {
    float* cRow = c + r * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < Vectors; ++v) {
      __m512 out = _mm512_mul_ps(alphaV, acc[r][v]);
      if (v + 1 < Vectors || lastMask == 0xFFFF) {
        if (beta != 0.0f) out = _mm512_fmadd_ps(betaV, _mm512_loadu_ps(cRow + 16 * v), out);
        if (in.bias) out = _mm512_add_ps(out, biasV[v]);
        _mm512_storeu_ps(cRow + 16 * v, out);
      } else {  // masked: never touches memory past the last column
        if (beta != 0.0f)
          out = _mm512_fmadd_ps(betaV, _mm512_maskz_loadu_ps(lastMask, cRow + 16 * v), out);
        if (in.bias) out = _mm512_add_ps(out, biasV[v]);
        _mm512_mask_storeu_ps(cRow + 16 * v, lastMask, out);
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
  const int index = (rows - 1) * kVectors + (cols + 15) / 16 - 1;
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

constexpr MicroKernel kKernel{"avx512", kAvx512Tile, microKernel};

}  // namespace

const MicroKernel* avx512MicroKernel() { return &kKernel; }

}  // namespace sg::cpu::gemm_detail

#else  // built without AVX-512 flags: this path is simply unavailable

namespace sg::cpu::gemm_detail {
const MicroKernel* avx512MicroKernel() { return nullptr; }
}  // namespace sg::cpu::gemm_detail

#endif
