// Internal to the CPU GEMM (gemm.cpp): the SIMD micro-kernels and how the driver finds them.
//
// Each micro-kernel lives in its own translation unit compiled with that ISA's flags
// (gemm_avx512.cpp, gemm_avx2.cpp), so no other code of the library is ever compiled for an
// instruction set the CPU may lack. gemm.cpp picks one at run time.
#pragma once
#include <cstdint>

namespace sg::cpu::gemm_detail {

// Computes one MR x NR tile of C from packed panels:
//   acc[r][c] = sum_{k < kc} packedA[k * MR + r] * packedB[k * NR + c]
//   C[r][c]   = alpha * acc[r][c] + beta * C[r][c]   for r < rows, c < cols
// beta == 0 stores alpha * acc without reading C (old NaNs vanish). packedA/packedB are
// 64-byte aligned and zero-padded past the matrix edge. Edge tiles (1 <= rows <= MR,
// 1 <= cols <= NR) may be computed by a smaller variant, and C is only read/written inside
// rows x cols. Every element of C gets the same sequence of operations (k ascending, one
// fused multiply-add per k, then the alpha/beta update) whatever its position in the tile,
// which keeps results independent of how the driver splits C among threads.
using MicroKernelFn = void (*)(int64_t kc, const float* packedA, const float* packedB, float* c,
                               int64_t ldc, int rows, int cols, float alpha, float beta);

// Tile shapes, shared with the driver so it can pack panels to match at compile time.
struct TileShape {
  int mr;  // rows of C per tile (A elements broadcast per k)
  int nr;  // columns of C per tile (a multiple of the vector width)
};
inline constexpr TileShape kAvx512Tile{14, 32};
inline constexpr TileShape kAvx2Tile{6, 16};

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
