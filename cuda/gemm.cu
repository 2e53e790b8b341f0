// SGEMM: C = alpha op(A) op(B) + beta C, row-major, any M, N, K, all four transposes.
//
// FP32 kernel (the default, exact fp32 FMA accumulation):
//   - 256 threads per block as a 16 x 16 grid; a block computes a BM x BN tile of C, each
//     thread TM x TN = (BM/16) x (BN/16) outputs held in registers. Two configurations:
//     128 x 128 (8 x 8 per thread, K tile 8) when that gives at least one block per SM,
//     otherwise 64 x 64 (4 x 4 per thread, K tile 16) for more blocks on small problems.
//   - Split K when even the 64 x 64 grid leaves more than half of the SMs idle (this
//     project's 256-wide layers: 16 blocks on 132 SMs) and the caller gave a workspace: up to
//     8 slices of whole K tiles (>= 64 of K each), block z of the grid takes slice z and
//     stores its raw sums; a second kernel adds the slices in order and applies alpha, beta
//     and the epilogue. Deterministic (the split depends on the shape and the SM count only);
//     the sum order differs from the unsplit kernel's by the slice boundaries.
//   - A thread's rows are ty*4 + {0..3} (+ 64, + 64*2, ...) and its columns tx*4 + {0..3}
//     (+ 64, ...): its shared-memory reads are float4s, conflict-free across a warp.
//   - Shared memory holds A^T (As[k][m]) and B (Bs[k][n]) for one K tile, double buffered:
//     the next tile's global loads are issued into registers before the current tile is
//     consumed and stored to the other buffer after, with one __syncthreads per K tile.
//   - Global loads are runs of 4 consecutive elements along the contiguous dimension of the
//     operand (k for A, m for A^T, n for B, k for B^T): one float4 load when the run is in
//     range and 16-byte aligned (aligned pointer, leading dimension a multiple of 4),
//     guarded scalar loads otherwise; elements outside the matrix read as 0.
//   - Epilogue: C = alpha * acc (+ beta * C only when beta != 0, so NaN in C is ignored),
//     then + bias[n] and an activation when asked (Epilogue, common.cuh): a Linear layer's
//     forward pass in one kernel.
// TF32 kernel (opt-in, sm_80+): nvcuda::wmma m16n16k8 TF32 fragments with fp32 accumulation;
//   K tile 16, two tile sizes chosen by the same plan as the fp32 kernel (planGemm): 128 x 128
//   per block of 8 warps (2 x 4 warps of 64 x 32, 4 x 2 fragments each) when that gives at
//   least one block per SM, else 64 x 64 per block of 4 warps (2 x 2 of 32 x 32), split K as
//   the fp32 kernel when even that leaves more than half of the SMs idle. The A and B tiles
//   go global -> shared by cp.async (no registers, no wait), double buffered: tile t + 1's
//   copies are in flight while the warps multiply tile t, one barrier per K tile. Each
//   operand is kept in shared memory as it lies in global memory (A as [m][k], or [k][m]
//   when transposed; B as [k][n], or [n][k]) and read by a row- or column-major fragment, so
//   every copy is a run of 4 floats along the contiguous dimension: one 16-byte cp.async
//   when the run is in range and 16-byte aligned (aligned pointer, leading dimension a
//   multiple of 4), else four 4-byte copies that zero-fill what lies outside the matrix.
//   Results go through a per-warp 16 x 16 staging area in the (then free) operand stages to
//   the guarded epilogue (float4 stores of C when aligned). Inputs are rounded to TF32
//   (10-bit mantissa), so results differ from fp32. The host emulation runs it with plain
//   copies for cp.async and its own wmma (test/cuda/host_emulation/mma.h), against the CPU
//   on TF32-rounded inputs.
#include "gemm.cuh"

#include <mma.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "check.cuh"
#include "common.cuh"

namespace sg::cuda {
namespace {

// ============================================================================================
// kernels
// ============================================================================================
// (The host emulation, test/cuda/host_emulation/run.sh, runs the text between this banner
// line "// kernels" and the "// launchers" one on the CPU: keep both lines exactly as they are.)

constexpr int kThreads = 256;  // FP32 kernel
// The fp32 kernel's shared rows are BM + 4 (BN + 4) floats: float4 reads stay aligned, and
// the transposed stores of storeTile (4 floats of one run to 4 rows, same column) fall in
// distinct banks (128 x 128, K tile 8: a warp's 16 columns x 2 runs; was 2-way) or 2-way
// (64 x 64, K tile 16: 8 columns x 4 runs; was 4-way), instead of the row stride's multiple of 32.
constexpr int kSmemPad = 4;

// Returns p[start .. start + 3], reading only indices < limit (others are 0). With `vec`,
// p + start is 16-byte aligned (start is a multiple of 4) and a full run is one float4 load.
__device__ __forceinline__ float4 loadRun4(const float* __restrict__ p, int start, int limit,
                                           bool vec) {
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (vec && start + 3 < limit) {
    v = __ldg(reinterpret_cast<const float4*>(p + start));
  } else {
    if (start < limit) v.x = __ldg(p + start);
    if (start + 1 < limit) v.y = __ldg(p + start + 1);
    if (start + 2 < limit) v.z = __ldg(p + start + 2);
    if (start + 3 < limit) v.w = __ldg(p + start + 3);
  }
  return v;
}

// Global -> registers for a K-major tile T[k][n] (rows k0.., columns n0.. of op(B)). It also
// loads op(A)'s tile as As[k][m]: A is op(A)ᵀ seen as a B operand, so pass !TA, M and m0.
template <int BN, int BK, bool TB, int LB>
__device__ __forceinline__ void loadTile(float4 (&rb)[LB], const float* __restrict__ B,
                                          int64_t ldb, int N, int K, int n0, int k0, bool vec) {
  constexpr int SB = BK * BN / 4;
#pragma unroll
  for (int i = 0; i < LB; ++i) {
    const int s = threadIdx.x + i * kThreads;
    rb[i] = make_float4(0.f, 0.f, 0.f, 0.f);
    if (s < SB) {
      if (!TB) {  // B is [K, N]: runs along n within row k
        const int kk = s / (BN / 4), nq = (s % (BN / 4)) * 4;
        const int k = k0 + kk;
        if (k < K) rb[i] = loadRun4(B + static_cast<int64_t>(k) * ldb, n0 + nq, N, vec);
      } else {  // B is stored [N, K]: runs along k within row n
        const int r = s / (BK / 4), kq = (s % (BK / 4)) * 4;
        const int n = n0 + r;
        if (n < N) rb[i] = loadRun4(B + static_cast<int64_t>(n) * ldb, k0 + kq, K, vec);
      }
    }
  }
}

// Registers -> shared memory Bs[k][n] (or As[k][m]) for the tile loaded by loadTile.
template <int BN, int BK, bool TB, int LB>
__device__ __forceinline__ void storeTile(const float4 (&rb)[LB], float (*Bs)[BN + kSmemPad]) {
  constexpr int SB = BK * BN / 4;
#pragma unroll
  for (int i = 0; i < LB; ++i) {
    const int s = threadIdx.x + i * kThreads;
    if (s < SB) {
      if (!TB) {
        const int kk = s / (BN / 4), nq = (s % (BN / 4)) * 4;
        *reinterpret_cast<float4*>(&Bs[kk][nq]) = rb[i];
      } else {
        const int r = s / (BK / 4), kq = (s % (BK / 4)) * 4;
        Bs[kq + 0][r] = rb[i].x;
        Bs[kq + 1][r] = rb[i].y;
        Bs[kq + 2][r] = rb[i].z;
        Bs[kq + 3][r] = rb[i].w;
      }
    }
  }
}

// One BM x BN tile of C per block; see the file comment.
// The epilogue's bias and activation for the output in column n (a no-op by default).
__device__ __forceinline__ float finish(const Epilogue& ep, int n, float v) {
  if (ep.bias) v = __fadd_rn(v, ep.bias[n]);
  return ep.activation == kNoActivation ? v : activate(ep.activation, v);
}

// C[m][n .. n + 3] = v (alpha * acc, given) + beta * C (C read only when beta != 0, so NaN
// in C is ignored), then the epilogue; crow is row m of C, and only columns < N are written.
// One float4 access when `vec` (crow + n 16-byte aligned) and the whole run is in range.
__device__ __forceinline__ void storeRun4(const Epilogue& ep, float* crow, int n, int N, float (&v)[4],
                                          float beta, bool vec) {
  if (vec && n + 3 < N) {
    float4* p = reinterpret_cast<float4*>(crow + n);
    if (beta != 0.f) {
      const float4 old = *p;
      v[0] = fmaf(beta, old.x, v[0]);
      v[1] = fmaf(beta, old.y, v[1]);
      v[2] = fmaf(beta, old.z, v[2]);
      v[3] = fmaf(beta, old.w, v[3]);
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = finish(ep, n + j, v[j]);
    *p = make_float4(v[0], v[1], v[2], v[3]);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (n + j < N) {
        float out = v[j];
        if (beta != 0.f) out = fmaf(beta, crow[n + j], out);
        crow[n + j] = finish(ep, n + j, out);
      }
    }
  }
}

// Split K (partial != null): block z sums k in [z kSlice, (z + 1) kSlice) only and stores its
// raw sums to partial[z][m][n] (M x N, no alpha, beta or epilogue); splitKReduceKernel
// finishes. Otherwise kSlice >= K and gridDim.z == 1.
template <int BM, int BN, int BK, bool TA, bool TB>
__global__ void __launch_bounds__(kThreads)
    sgemmKernel(Epilogue ep, int M, int N, int K, float alpha, const float* __restrict__ A, int64_t lda,
                const float* __restrict__ B, int64_t ldb, float beta, float* __restrict__ C,
                int64_t ldc, bool vecA, bool vecB, bool vecC, int kSlice,
                float* __restrict__ partial) {
  static_assert(BM % 64 == 0 && BN % 64 == 0 && BK % 4 == 0, "tile shape");
  constexpr int TM = BM / 16, TN = BN / 16;  // outputs per thread
  constexpr int LA = (BM * BK / 4 + kThreads - 1) / kThreads;
  constexpr int LB = (BK * BN / 4 + kThreads - 1) / kThreads;

  __shared__ __align__(16) float As[2][BK][BM + kSmemPad];
  __shared__ __align__(16) float Bs[2][BK][BN + kSmemPad];

  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  float4 ra[LA], rb[LB];
  // This block's K range; K tiles start at kBegin (a multiple of BK), reads stop at kEnd.
  const int kBegin = static_cast<int>(blockIdx.z) * kSlice;
  const int kEnd = K - kBegin < kSlice ? K : kBegin + kSlice;
  const int tiles = kEnd > kBegin ? (kEnd - kBegin + BK - 1) / BK : 0;
  if (tiles > 0) {
    loadTile<BM, BK, !TA, LA>(ra, A, lda, M, kEnd, m0, kBegin, vecA);
    loadTile<BN, BK, TB, LB>(rb, B, ldb, N, kEnd, n0, kBegin, vecB);
    storeTile<BM, BK, !TA, LA>(ra, As[0]);
    storeTile<BN, BK, TB, LB>(rb, Bs[0]);
    __syncthreads();
  }

  for (int t = 0; t < tiles; ++t) {
    const int cur = t & 1;
    const bool more = t + 1 < tiles;
    if (more) {  // next tile's global loads in flight during the math below
      loadTile<BM, BK, !TA, LA>(ra, A, lda, M, kEnd, m0, kBegin + (t + 1) * BK, vecA);
      loadTile<BN, BK, TB, LB>(rb, B, ldb, N, kEnd, n0, kBegin + (t + 1) * BK, vecB);
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], b[TN];
#pragma unroll
      for (int g = 0; g < TM / 4; ++g) {
        const float4 v = *reinterpret_cast<const float4*>(&As[cur][kk][g * 64 + ty * 4]);
        a[g * 4 + 0] = v.x;
        a[g * 4 + 1] = v.y;
        a[g * 4 + 2] = v.z;
        a[g * 4 + 3] = v.w;
      }
#pragma unroll
      for (int g = 0; g < TN / 4; ++g) {
        const float4 v = *reinterpret_cast<const float4*>(&Bs[cur][kk][g * 64 + tx * 4]);
        b[g * 4 + 0] = v.x;
        b[g * 4 + 1] = v.y;
        b[g * 4 + 2] = v.z;
        b[g * 4 + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (more) {
      // The other buffer was last read in iteration t - 1, before that iteration's barrier.
      storeTile<BM, BK, !TA, LA>(ra, As[cur ^ 1]);
      storeTile<BN, BK, TB, LB>(rb, Bs[cur ^ 1]);
    }
    __syncthreads();
  }

  if (partial) {  // split K: raw sums, finished by splitKReduceKernel
    float* slice = partial + static_cast<int64_t>(blockIdx.z) * M * N;
#pragma unroll
    for (int g = 0; g < TM / 4; ++g)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int m = m0 + g * 64 + ty * 4 + i;
        if (m >= M) continue;
#pragma unroll
        for (int h = 0; h < TN / 4; ++h)
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const int n = n0 + h * 64 + tx * 4 + j;
            if (n < N) slice[static_cast<int64_t>(m) * N + n] = acc[g * 4 + i][h * 4 + j];
          }
      }
    return;
  }

  // Epilogue.
#pragma unroll
  for (int g = 0; g < TM / 4; ++g) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int m = m0 + g * 64 + ty * 4 + i;
      if (m >= M) continue;
      float* crow = C + static_cast<int64_t>(m) * ldc;
#pragma unroll
      for (int h = 0; h < TN / 4; ++h) {
        const int n = n0 + h * 64 + tx * 4;
        float v[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) v[j] = alpha * acc[g * 4 + i][h * 4 + j];
        storeRun4(ep, crow, n, N, v, beta, vecC);
      }
    }
  }
}

// C = alpha (sum over z of partial[z]) (+ beta C), then the epilogue; the slices are added in
// z order, so the result depends only on the shape and the split, never on timing.
__global__ void splitKReduceKernel(const float* __restrict__ partial, int slices, int M, int N,
                                   float alpha, float beta, float* __restrict__ C, int64_t ldc,
                                   Epilogue ep) {
  const int64_t total = static_cast<int64_t>(M) * N, stride = total;
  for (int64_t i = firstIndex(); i < total; i += gridStep()) {
    float sum = partial[i];
    for (int z = 1; z < slices; ++z) sum = __fadd_rn(sum, partial[z * stride + i]);
    const int m = static_cast<int>(i / N), n = static_cast<int>(i - static_cast<int64_t>(m) * N);
    float* c = C + static_cast<int64_t>(m) * ldc + n;
    float v = alpha * sum;
    if (beta != 0.f) v = fmaf(beta, *c, v);
    *c = finish(ep, n, v);
  }
}

// The TF32 kernel is compiled for the device from sm_80 on (cp.async, TF32 wmma), and in the
// host emulation (SG_HOST_EMULATION: plain copies, an emulated wmma); elsewhere its body is
// empty (the launcher only uses it on a device of compute capability 8.0 or more).
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800) || defined(SG_HOST_EMULATION)
#define SG_TF32_KERNEL 1
#endif

#ifdef SG_TF32_KERNEL
// cp.async of `bytes` (4 or 16) from global `src` to shared `dst`; the first `srcBytes` are
// copied, the rest zero-filled (srcBytes 0: `src` is not read). 16 bytes bypass L1 (.cg).
template <int bytes>
__device__ __forceinline__ void cpAsync(float* dst, const float* src, int srcBytes) {
#ifdef __CUDA_ARCH__
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  if constexpr (bytes == 16)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(srcBytes));
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src), "r"(srcBytes));
#else
  for (int i = 0; i < bytes / 4; ++i) dst[i] = 4 * i < srcBytes ? src[i] : 0.f;
#endif
}
__device__ __forceinline__ void cpAsyncCommit() {
#ifdef __CUDA_ARCH__
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
// Waits until at most `pending` committed groups of this thread are still in flight.
template <int pending>
__device__ __forceinline__ void cpAsyncWait() {
#ifdef __CUDA_ARCH__
  asm volatile("cp.async.wait_group %0;\n" ::"n"(pending));
#endif
}

// Copies the run p[start .. start + 3] of a row (elements < limit exist, the others are 0;
// none when !rowOk) into dst. With `vec`, p + start is 16-byte aligned (start a multiple of 4).
__device__ __forceinline__ void copyRun4(float* dst, const float* p, int start, int limit,
                                         bool rowOk, bool vec) {
  const int left = rowOk ? limit - start : 0;
  const int n = left < 0 ? 0 : left > 4 ? 4 : left;
  if (vec && n == 4) {
    cpAsync<16>(dst, p + start, 16);
  } else {
#pragma unroll
    for (int e = 0; e < 4; ++e) cpAsync<4>(dst + e, e < n ? p + start + e : p, e < n ? 4 : 0);
  }
}
#endif

// TF32 tensor-core kernel: a BM x BN tile of C per block of WM x WN warps, each warp a
// (BM / WM) x (BN / WN) tile held as FM x FN accumulator fragments of 16 x 16; K tile 16.
// MINB: the blocks per SM that __launch_bounds__ asks registers for. Split K as the fp32
// kernel (partial != null: block z sums its K slice only and stores raw sums).
template <int BM, int BN, int WM, int WN, int MINB, bool TA, bool TB>
__global__ void __launch_bounds__(32 * WM * WN, MINB)
    sgemmTf32Kernel(Epilogue ep, int M, int N, int K, float alpha, const float* __restrict__ A, int64_t lda,
                    const float* __restrict__ B, int64_t ldb, float beta, float* __restrict__ C,
                    int64_t ldc, bool vecA, bool vecB, bool vecC, int kSlice,
                    float* __restrict__ partial) {
#ifdef SG_TF32_KERNEL
  using namespace nvcuda;
  constexpr int kThreadsHere = 32 * WM * WN, BK = 16;
  constexpr int WTM = BM / WM, WTN = BN / WN, FM = WTM / 16, FN = WTN / 16;
  static_assert(WTM % 16 == 0 && WTN % 16 == 0, "warp tile of whole fragments");
  // Shared layouts, as the operands lie in memory: A [m][k] (TA: [k][m]), B [k][n] (TB:
  // [n][k]). Padded by 4 floats: row starts stay 16-byte aligned (cp.async) and every
  // fragment pointer below is a multiple of 32 bytes from the 128-byte aligned base (wmma).
  constexpr int LDA = TA ? BM + 4 : BK + 4, LDB = TB ? BK + 4 : BN + 4;
  constexpr int kStageA = TA ? BK * LDA : BM * LDA, kStageB = TB ? BN * LDB : BK * LDB;
  // After the K loop the stages hold, per warp, one 16 x 16 result fragment at a time.
  constexpr int LDS = 16 + 4, kFloats = 2 * (kStageA + kStageB);
  static_assert(kStageA % 8 == 0 && kStageB % 8 == 0, "32-byte aligned stages (wmma)");
  static_assert(kFloats >= WM * WN * 16 * LDS, "the epilogue's staging fits in the stages");
  static_assert(kFloats * sizeof(float) <= 48 * 1024, "static shared memory is at most 48 KB");
  constexpr int kRunsA = BM * BK / 4, kRunsB = BN * BK / 4;  // runs of 4 floats per K tile
  static_assert(kRunsA % kThreadsHere == 0 && kRunsB % kThreadsHere == 0, "whole runs per thread");
  __shared__ __align__(128) float smem[kFloats];
  float* const As = smem;
  float* const Bs = smem + 2 * kStageA;
  using LayoutA = std::conditional_t<TA, wmma::col_major, wmma::row_major>;
  using LayoutB = std::conditional_t<TB, wmma::col_major, wmma::row_major>;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / WN, wn = warp % WN;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  // This block's K range (split K); tiles start at kBegin, reads stop at kEnd.
  const int kBegin = static_cast<int>(blockIdx.z) * kSlice;
  const int kEnd = K - kBegin < kSlice ? K : kBegin + kSlice;
  const int tiles = kEnd > kBegin ? (kEnd - kBegin + BK - 1) / BK : 0;

  // Enqueues the copies of K tile `tile` into stage `stage`, consecutive threads on
  // consecutive runs of the contiguous dimension, and commits them as one group.
  auto loadTile = [&](int tile, int stage) {
    const int k0 = kBegin + tile * BK;
    float* as = As + stage * kStageA;
    float* bs = Bs + stage * kStageB;
#pragma unroll
    for (int j = 0; j < kRunsA / kThreadsHere; ++j) {
      const int run = tid + j * kThreadsHere;
      if (!TA) {  // row m of A: k0 .. k0 + 15 contiguous
        const int m = run / (BK / 4), k = run % (BK / 4) * 4;
        copyRun4(as + m * LDA + k, A + static_cast<int64_t>(m0 + m) * lda, k0 + k, kEnd, m0 + m < M, vecA);
      } else {  // row k of A^T: m0 .. m0 + BM - 1 contiguous
        const int k = run / (BM / 4), m = run % (BM / 4) * 4;
        copyRun4(as + k * LDA + m, A + static_cast<int64_t>(k0 + k) * lda, m0 + m, M, k0 + k < kEnd, vecA);
      }
    }
#pragma unroll
    for (int j = 0; j < kRunsB / kThreadsHere; ++j) {
      const int run = tid + j * kThreadsHere;
      if (!TB) {  // row k of B: n0 .. n0 + BN - 1 contiguous
        const int k = run / (BN / 4), n = run % (BN / 4) * 4;
        copyRun4(bs + k * LDB + n, B + static_cast<int64_t>(k0 + k) * ldb, n0 + n, N, k0 + k < kEnd, vecB);
      } else {  // row n of B^T: k0 .. k0 + 15 contiguous
        const int n = run / (BK / 4), k = run % (BK / 4) * 4;
        copyRun4(bs + n * LDB + k, B + static_cast<int64_t>(n0 + n) * ldb, k0 + k, kEnd, n0 + n < N, vecB);
      }
    }
    cpAsyncCommit();
  };

  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[FM][FN];
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  if (tiles > 0) loadTile(0, 0);
  for (int t = 0; t < tiles; ++t) {
    const int stage = t & 1;
    // Tile t's copies (the only group in flight) have landed for this thread; after the
    // barrier they have for all, and every warp has finished multiplying tile t - 1, so tile
    // t + 1's copies may go to that stage while the warps multiply tile t: one barrier per tile.
    cpAsyncWait<0>();
    __syncthreads();
    if (t + 1 < tiles) loadTile(t + 1, stage ^ 1);
    const float* as = As + stage * kStageA;
    const float* bs = Bs + stage * kStageB;
    // Not unrolled: unrolled, ptxas (CUDA 13.0) overlaps the two steps' fragment loads and the
    // 128 x 128 kernel spills at its 128-register cap (2 blocks of 256 threads per SM).
#pragma unroll 1
    for (int kk = 0; kk < BK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, LayoutA> a[FM];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, LayoutB> b[FN];
#pragma unroll
      for (int i = 0; i < FM; ++i) {
        const int m = wm * WTM + i * 16;
        wmma::load_matrix_sync(a[i], TA ? as + kk * LDA + m : as + m * LDA + kk, LDA);
#pragma unroll
        for (int e = 0; e < a[i].num_elements; ++e) a[i].x[e] = wmma::__float_to_tf32(a[i].x[e]);
      }
#pragma unroll
      for (int j = 0; j < FN; ++j) {
        const int n = wn * WTN + j * 16;
        wmma::load_matrix_sync(b[j], TB ? bs + n * LDB + kk : bs + kk * LDB + n, LDB);
#pragma unroll
        for (int e = 0; e < b[j].num_elements; ++e) b[j].x[e] = wmma::__float_to_tf32(b[j].x[e]);
      }
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
  }
  __syncthreads();  // every warp is done with the stages: the epilogue reuses them

  // Epilogue, one fragment at a time through this warp's 16 x 16 staging area: lane l takes
  // row l / 2, columns (l % 2) * 8 .. + 7, as two runs of 4 (float4 stores when vecC).
  float* const staged = smem + warp * 16 * LDS;
  const int r = lane / 2, c = lane % 2 * 8;
  float* const slice = partial ? partial + static_cast<int64_t>(blockIdx.z) * M * N : nullptr;
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j) {
      wmma::store_matrix_sync(staged, acc[i][j], LDS, wmma::mem_row_major);
      __syncwarp();
      const int gm = m0 + wm * WTM + i * 16 + r, gn = n0 + wn * WTN + j * 16 + c;
      if (gm < M) {
#pragma unroll 1
        for (int h = 0; h < 8; h += 4) {
          float v[4];
#pragma unroll
          for (int e = 0; e < 4; ++e) v[e] = staged[r * LDS + c + h + e];
          if (slice) {  // split K: raw sums, finished by splitKReduceKernel
#pragma unroll
            for (int e = 0; e < 4; ++e)
              if (gn + h + e < N) slice[static_cast<int64_t>(gm) * N + gn + h + e] = v[e];
          } else {
#pragma unroll
            for (int e = 0; e < 4; ++e) v[e] = alpha * v[e];
            storeRun4(ep, C + static_cast<int64_t>(gm) * ldc, gn + h, N, v, beta, vecC);
          }
        }
      }
      __syncwarp();  // every lane has read the staging area before the next fragment's store
    }
#endif
}

// ============================================================================================
// launchers
// ============================================================================================

std::atomic<bool> gTf32{false};

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The grid of a BM x BN tiled product split into `slices` K slices of whole BK tiles (the
// last may be shorter, or after rounding absent): kSlice is each slice's K.
struct TiledGrid {
  dim3 grid;
  int kSlice;
};
TiledGrid tiledGrid(int BM, int BN, int BK, int M, int N, int K, int slices) {
  const int kSlice = slices > 1 ? ((K + slices - 1) / slices + BK - 1) / BK * BK : (K > 0 ? K : 1);
  const int zBlocks = slices > 1 ? (K + kSlice - 1) / kSlice : 1;
  const dim3 grid((M + BM - 1) / BM, (N + BN - 1) / BN, zBlocks);
  if (grid.y > 65535)
    throw std::runtime_error("sgemm: N = " + std::to_string(N) + " is too large for the grid");
  return {grid, kSlice};
}

// After a split-K product: C = alpha (sum of the grid.z slices) + beta C, then the epilogue.
void launchSplitKReduce(cudaStream_t stream, const TiledGrid& g, float* partial, int M, int N,
                        float alpha, float beta, float* C, int64_t ldc, const Epilogue& ep) {
  const int64_t total = static_cast<int64_t>(M) * N;
  SG_LAUNCH(gridFor(total), kBlock, 0, stream, splitKReduceKernel)(partial, static_cast<int>(g.grid.z), M,
      N, alpha, beta, C, ldc, ep);
  CUDA_CHECK_LAUNCH();
}

template <int BM, int BN, int BK>
void launchFp32(cudaStream_t stream, const Epilogue& ep, bool transA, bool transB, int M, int N, int K, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                int64_t ldc, int slices = 1, float* partial = nullptr) {
  const TiledGrid g = tiledGrid(BM, BN, BK, M, N, K, slices);
  const dim3 grid = g.grid;
  const int kSlice = g.kSlice;
  const bool vecA = aligned16(A) && lda % 4 == 0;
  const bool vecB = aligned16(B) && ldb % 4 == 0;
  const bool vecC = aligned16(C) && ldc % 4 == 0;
  float* const part = slices > 1 ? partial : nullptr;
  if (!transA && !transB)
    SG_LAUNCH(grid, kThreads, 0, stream, sgemmKernel<BM, BN, BK, false, false>)(ep, M, N, K, alpha,
        A, lda, B, ldb, beta, C, ldc, vecA, vecB, vecC, kSlice, part);
  else if (!transA && transB)
    SG_LAUNCH(grid, kThreads, 0, stream, sgemmKernel<BM, BN, BK, false, true>)(ep, M, N, K, alpha,
        A, lda, B, ldb, beta, C, ldc, vecA, vecB, vecC, kSlice, part);
  else if (transA && !transB)
    SG_LAUNCH(grid, kThreads, 0, stream, sgemmKernel<BM, BN, BK, true, false>)(ep, M, N, K, alpha,
        A, lda, B, ldb, beta, C, ldc, vecA, vecB, vecC, kSlice, part);
  else
    SG_LAUNCH(grid, kThreads, 0, stream, sgemmKernel<BM, BN, BK, true, true>)(ep, M, N, K, alpha,
        A, lda, B, ldb, beta, C, ldc, vecA, vecB, vecC, kSlice, part);
  CUDA_CHECK_LAUNCH();
  if (part) launchSplitKReduce(stream, g, part, M, N, alpha, beta, C, ldc, ep);
}

// The configuration for a product on `numSMs` multiprocessors, for both kernels (their tiles
// are the same sizes): the 128 x 128 tile when it gives at least one block per SM; else the
// 64 x 64 tile, and when even that leaves more than half of the SMs idle, split K into up to
// kMaxSplits slices of at least kMinSliceK (whole K tiles) so that the grid covers the SMs:
// at this project's 256 x 256 layers (16 tiles of 64 x 64) a K of 256 gives 4 slices, 64
// blocks; 784 gives 8, 128 blocks.
constexpr int kMaxSplits = 8;
constexpr int64_t kMinSliceK = 64;

struct GemmPlan {
  bool bigTile;
  int slices;  // 1: no split
};

GemmPlan planGemm(int64_t M, int64_t N, int64_t K, int numSMs) {
  const int64_t bigTiles = ((M + 127) / 128) * ((N + 127) / 128);
  if (bigTiles >= numSMs) return {true, 1};
  const int64_t tiles = ((M + 63) / 64) * ((N + 63) / 64);
  if (2 * tiles > numSMs) return {false, 1};
  const int64_t byGrid = (numSMs + tiles - 1) / tiles, byK = K / kMinSliceK;
  const int64_t slices = std::min<int64_t>({byGrid, byK, kMaxSplits});
  return {false, slices >= 2 ? static_cast<int>(slices) : 1};
}

// The TF32 kernel's configurations: 128 x 128 per block of 8 warps (2 x 4, 64 x 32 each: 4 x 2
// fragments), 2 blocks per SM; 64 x 64 per block of 4 warps (2 x 2, 32 x 32 each), 4 per SM.
template <int BM, int BN, int WM, int WN, int MINB>
void launchTf32(cudaStream_t stream, const Epilogue& ep, bool transA, bool transB, int M, int N, int K, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                int64_t ldc, int slices = 1, float* partial = nullptr) {
  const TiledGrid g = tiledGrid(BM, BN, 16, M, N, K, slices);
  const dim3 grid = g.grid;
  const int kSlice = g.kSlice, threads = 32 * WM * WN;
  // 16-byte copies need every run start 16-byte aligned: an aligned base, lda/ldb multiples of 4.
  const bool vecA = aligned16(A) && lda % 4 == 0;
  const bool vecB = aligned16(B) && ldb % 4 == 0;
  const bool vecC = aligned16(C) && ldc % 4 == 0;
  float* const part = slices > 1 ? partial : nullptr;
  if (!transA && !transB)
    SG_LAUNCH(grid, threads, 0, stream, sgemmTf32Kernel<BM, BN, WM, WN, MINB, false, false>)(ep, M, N, K,
        alpha, A, lda, B, ldb, beta, C, ldc, vecA, vecB, vecC, kSlice, part);
  else if (!transA && transB)
    SG_LAUNCH(grid, threads, 0, stream, sgemmTf32Kernel<BM, BN, WM, WN, MINB, false, true>)(ep, M, N, K,
        alpha, A, lda, B, ldb, beta, C, ldc, vecA, vecB, vecC, kSlice, part);
  else if (transA && !transB)
    SG_LAUNCH(grid, threads, 0, stream, sgemmTf32Kernel<BM, BN, WM, WN, MINB, true, false>)(ep, M, N, K,
        alpha, A, lda, B, ldb, beta, C, ldc, vecA, vecB, vecC, kSlice, part);
  else
    SG_LAUNCH(grid, threads, 0, stream, sgemmTf32Kernel<BM, BN, WM, WN, MINB, true, true>)(ep, M, N, K,
        alpha, A, lda, B, ldb, beta, C, ldc, vecA, vecB, vecC, kSlice, part);
  CUDA_CHECK_LAUNCH();
  if (part) launchSplitKReduce(stream, g, part, M, N, alpha, beta, C, ldc, ep);
}

}  // namespace

size_t sgemmWorkspaceFloats(int64_t M, int64_t N, int64_t K, int numSMs, bool /*tf32Capable*/) {
  if (M <= 0 || N <= 0) return 0;
  const GemmPlan plan = planGemm(M, N, K, numSMs);  // the same for both kernels
  return plan.slices > 1 ? static_cast<size_t>(plan.slices) * M * N : 0;
}

void setGemmTf32(bool enabled) { gTf32.store(enabled); }
bool gemmTf32() { return gTf32.load(); }

void launchSgemm(cudaStream_t stream, bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                 float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
                 float beta, float* C, int64_t ldc, int numSMs, bool tf32Capable,
                 const float* bias, int activation, float* workspace) {
  const Epilogue ep{bias, activation};
  if (M <= 0 || N <= 0) return;
  // Tile origins and run ends stay below INT_MAX with this margin.
  constexpr int64_t kMaxDim = INT_MAX - 4096;
  if (M > kMaxDim || N > kMaxDim || K > kMaxDim)
    throw std::runtime_error("sgemm: dimensions [" + std::to_string(M) + "," +
                             std::to_string(N) + "," + std::to_string(K) + "] are too large");
  const int m = static_cast<int>(M), n = static_cast<int>(N), k = static_cast<int>(K);
  const GemmPlan plan = planGemm(M, N, K, numSMs);
  const int slices = plan.slices > 1 && workspace ? plan.slices : 1;
  if (tf32Capable && gTf32.load()) {
    if (plan.bigTile)
      launchTf32<128, 128, 2, 4, 2>(stream, ep, transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    else
      launchTf32<64, 64, 2, 2, 4>(stream, ep, transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc,
                                  slices, workspace);
    return;
  }
  if (plan.bigTile)
    launchFp32<128, 128, 8>(stream, ep, transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    launchFp32<64, 64, 16>(stream, ep, transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, slices,
                           workspace);
}

}  // namespace sg::cuda
