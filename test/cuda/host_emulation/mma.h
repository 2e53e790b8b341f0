// Stand-in for CUDA's <mma.h> (wmma) in the host emulation: the part of nvcuda::wmma that the
// TF32 kernel of cuda/gemm.cu uses, with the documented semantics of each call, so that the
// kernel's tiling, staging, guards and double buffering run on the CPU. Not the hardware's
// register layout: every thread of a warp holds the whole tile (fragment::x in row-major
// order of the logical matrix), which is enough for a kernel that touches x only element by
// element. load_matrix_sync: every lane reads the tile itself; store_matrix_sync: lane 0
// writes it, between two warp barriers (so no two threads write one address). mma_sync adds
// the K products in order in float (the hardware's order and intermediate precision are not
// specified: the checks allow for that).
#pragma once
#include <cuda_runtime.h>  // the emulation's (emu::current: the warp barriers)

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K>
struct Dims;
template <int M, int N, int K>
struct Dims<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct Dims<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct Dims<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static constexpr int rows = Dims<Use, M, N, K>::rows, cols = Dims<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  float x[num_elements];  // x[r * cols + c]: element (r, c) of the logical matrix
};

template <class Use, int M, int N, int K, class T, class L>
void fill_fragment(fragment<Use, M, N, K, T, L>& f, float v) {
  for (float& e : f.x) e = v;
}

// Element (r, c) at p[r * ldm + c] (row_major) or p[r + c * ldm] (col_major).
template <class Use, int M, int N, int K, class T, class L>
void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const float* p, unsigned ldm) {
  using F = fragment<Use, M, N, K, T, L>;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      f.x[r * F::cols + c] = std::is_same_v<L, col_major> ? p[r + c * int64_t(ldm)] : p[r * int64_t(ldm) + c];
}

// cvt.rna.tf32.f32: round to nearest, ties away from zero, to a 10-bit mantissa (the low 13
// bits of the float cleared); infinities and NaN unchanged.
inline float __float_to_tf32(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & ~0x1fffu;
  std::memcpy(&v, &u, 4);
  return v;
}

template <int M, int N, int K, class LA, class LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, precision::tf32, LA>& a,
              const fragment<matrix_b, M, N, K, precision::tf32, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float s = c.x[i * N + j];
      for (int k = 0; k < K; ++k) s += a.x[i * K + k] * b.x[k * N + j];
      d.x[i * N + j] = s;
    }
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout) {
  emu::current->warps[emu::linearTid() / 32]->wait();
  if (emu::linearTid() % 32 == 0)
    for (int r = 0; r < M; ++r)
      for (int c = 0; c < N; ++c)
        (layout == mem_row_major ? p[r * int64_t(ldm) + c] : p[r + c * int64_t(ldm)]) = f.x[r * N + c];
  emu::current->warps[emu::linearTid() / 32]->wait();
}

}  // namespace nvcuda::wmma
