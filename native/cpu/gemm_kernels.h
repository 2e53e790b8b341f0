// Internal to the CPU GEMM (gemm.cpp): the SIMD micro-kernels and how the driver finds them.
//
// Each micro-kernel lives in its own translation unit compiled with that ISA's flags
// (gemm_avx512.cpp, gemm_avx2.cpp), so no other code of the library is ever compiled for an
// instruction set the CPU may lack. gemm.cpp picks one at run time.
#pragma once
#include <cstdint>

namespace sg::cpu::gemm_detail {

// Where a micro-kernel reads its operands. Usually both are packed panels (64-byte aligned,
// zero-padded past the matrix edge). When an operand's every element is used by a single tile
// (N fits one tile: each element of op(A) meets one panel of B; M fits one tile: each element
// of op(B) meets one panel of A), packing it would cost more than it saves, and the kernel
// reads it where it lies. At most one of the two is read in place.
enum class AOrder {
  Packed,        // element (r, k) at a[k * MR + r]: a packed panel
  RowsAdjacent,  // element (r, k) at a[k * aStride + r]: op(A) = A^T read in place
  KAdjacent,     // element (r, k) at a[r * aStride + k]: op(A) = A read in place
};
struct TileInputs {
  const float* a;
  int64_t aStride;  // unused for AOrder::Packed
  AOrder aOrder;
  const float* b;  // element (k, c) at b[k * bStride + c]
  int64_t bStride;
  bool bPacked;  // a packed panel (bStride = NR); else op(B) = B read in place, only columns < cols
  const float* bias;  // not null: C[r][c] += bias[c] after the alpha/beta update
};

// Computes one MR x NR tile of C:
//   acc[r][c] = sum_{k < kc} A(r, k) * B(k, c)
//   C[r][c]   = alpha * acc[r][c] + beta * C[r][c]   for r < rows, c < cols
//   C[r][c]   = C[r][c] + bias[c]                     (rounded separately; if bias is set)
// beta == 0 stores alpha * acc without reading C (old NaNs vanish). Edge tiles (1 <= rows <=
// MR, 1 <= cols <= NR) may be computed by a smaller variant, and C is only read/written inside
// rows x cols (operands read in place: only rows x kc of A and kc x cols of B are read). Every
// element of C gets the same sequence of operations (k ascending, one fused multiply-add per
// k, then the alpha/beta update) whatever its position in the tile and wherever its operands
// are read from, which keeps results independent of how the driver splits C among threads
// and of whether it packs.
using MicroKernelFn = void (*)(int64_t kc, const TileInputs& in, float* c, int64_t ldc, int rows,
                               int cols, float alpha, float beta);

// Tile shapes, shared with the driver so it can pack panels to match at compile time.
struct TileShape {
  int mr;     // rows of C per tile (A elements broadcast per k)
  int nr;     // columns of C per tile (a multiple of the vector width)
  int lanes;  // floats per vector: a tile's columns are computed in whole vectors
};
inline constexpr TileShape kAvx512Tile{14, 32, 16};
inline constexpr TileShape kAvx2Tile{6, 16, 8};

struct MicroKernel {
  const char* isa;  // "avx512", "avx2", "generic"
  TileShape tile;
  MicroKernelFn run;
};

// nullptr when the translation unit was compiled without its ISA flags (e.g. on non-x86),
// so a build that leaves a path out still links and just never selects it.
const MicroKernel* avx512MicroKernel();
const MicroKernel* avx2MicroKernel();

// Forces the path sgemm uses ("avx512", "avx2", "generic"), for tests and benchmarks.
// Returns false, changing nothing, if this CPU or build cannot run it. The environment
// variable SYNTHGRAD_SGEMM_ISA does the same at the first call.
bool selectSgemmIsa(const char* isa);

}  // namespace sg::cpu::gemm_detail
