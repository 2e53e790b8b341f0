// Single-precision GEMM for the CPU backend: C = alpha * op(A) * op(B) + beta * C.
//
// Design (the classic Goto/BLIS layering, row-major):
//   - A micro-kernel computes an MR x NR tile of C in vector registers from two packed
//     panels: MR rows of op(A) stored k-major (MR values per k) and NR columns of op(B)
//     stored k-major (NR values per k). Per k it loads NR/W vectors of B, broadcasts MR
//     values of A and issues MR*NR/W independent FMAs, so it runs near peak FMA throughput.
//     The kernels (AVX-512 14x32, AVX2 6x16) live in their own files compiled with their
//     ISA flags; a portable C++ kernel here covers every other CPU. The path is chosen at
//     run time from CPUID, so one binary runs everywhere and the rest of the library never
//     contains AVX/AVX-512 instructions.
//   - Packing copies blocks of op(A)/op(B) into those panels. It absorbs all four transpose
//     combinations and the leading dimensions, zero-pads the edges, and makes the kernel's
//     loads sequential and 64-byte aligned. Edge tiles run a kernel variant sized to them
//     (fewer rows / vectors) and mask their final read/write of C.
//   - Cache blocking: K is cut into KC slices and N into NC blocks; each KC x NC block of
//     op(B) is packed once, then each MC x KC block of op(A) is packed and multiplied against
//     it. Inner loops walk NR-wide B micro-panels (KC x NR, reused from L1 by every A
//     micro-panel of the block) and MR-high A micro-panels (the MC x KC block stays in the
//     1 MiB L2 of Zen 4/5). Blocks are cut evenly (K = 784 is 4 x 196, not 3 x 256 + 16).
//   - Operands read once are not packed. When N fits one tile, every element of op(A) meets
//     a single panel of B, so the kernel broadcasts it from where it lies; when M fits one
//     tile, the same holds for op(B), read in place if its rows are contiguous. When that
//     leaves vector lanes idle (N = 10 fills 10 of 16) or would need a transposing pack, C is
//     computed as its transpose C^T = op(B)^T op(A)^T through a small scratch block.
//   - Epilogue (gemm.h): a bias and an element-wise map (a Linear layer's activation) are
//     applied to each tile of C right after its last K slice: the kernel adds the bias to
//     its registers as it stores the tile, then the map runs on the tile while it is in L1.
//   - Threads (sg::parallelFor) split C, never K. Usually C is cut into several tiles per
//     thread (a helper that starts late, or a core busy with another stream, then just takes
//     fewer) and both operands are packed once for all tiles, block by block, by whichever
//     task needs a block first. Only when an operand would exceed 8 MiB does each thread take
//     one rectangle and pack its own copies (their cost is then negligible). Problems too
//     small to amortise waking the pool run on the calling thread.
//   - Determinism: every element of C is accumulated in the same order (KC slices fixed by
//     K alone, k ascending inside a slice, the same FMA sequence in every kernel variant)
//     wherever it falls and whether or not its operands were packed or C transposed (an FMA's
//     product does not depend on the order of its factors), so results are bit-identical for
//     any thread count, split or route.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <thread>

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>  // SSE2 is part of every x86-64 CPU: safe without run-time checks
#define SG_GEMM_HAVE_SSE2 1
#else
#define SG_GEMM_HAVE_SSE2 0
#endif

#include "../core/parallel.h"
#include "gemm.h"
#include "gemm_kernels.h"
#include "kernels.h"

namespace sg::cpu {
namespace gemm_detail {
namespace {

// ---- portable micro-kernel -----------------------------------------------------------------

// 4 x 8 keeps 32 accumulators: 8 SSE (or 4 AVX / 8 NEON) registers, so plain -O2/-O3
// vectorised code stays in registers on any target with 16+ vector registers.
inline constexpr TileShape kGenericTile{4, 8, 8};

void genericMicroKernel(int64_t kc, const TileInputs& in, float* __restrict c, int64_t ldc,
                        int rows, int cols, float alpha, float beta) {
  constexpr int MR = kGenericTile.mr, NR = kGenericTile.nr;
  float acc[MR][NR] = {};
  if (in.aOrder == AOrder::Packed && in.bPacked) {
    for (int64_t k = 0; k < kc; ++k) {
      const float* a = in.a + k * MR;
      const float* b = in.b + k * NR;
      for (int r = 0; r < MR; ++r)
        for (int j = 0; j < NR; ++j) acc[r][j] += a[r] * b[j];
    }
  } else {  // an operand read in place: only rows x kc of A and kc x cols of B exist
    const int64_t aRowStep = in.aOrder == AOrder::KAdjacent ? in.aStride : 1;
    const int64_t aKStep = in.aOrder == AOrder::Packed         ? MR
                           : in.aOrder == AOrder::RowsAdjacent ? in.aStride
                                                               : 1;
    const int64_t bKStep = in.bPacked ? NR : in.bStride;
    for (int64_t k = 0; k < kc; ++k) {
      const float* b = in.b + k * bKStep;
      for (int r = 0; r < rows; ++r) {
        const float a = in.a[r * aRowStep + k * aKStep];
        for (int j = 0; j < cols; ++j) acc[r][j] += a * b[j];
      }
    }
  }
  for (int r = 0; r < rows; ++r) {
    float* cRow = c + r * ldc;
    for (int j = 0; j < cols; ++j)
      cRow[j] = beta == 0.0f ? alpha * acc[r][j] : alpha * acc[r][j] + beta * cRow[j];
    if (in.bias)
      for (int j = 0; j < cols; ++j) cRow[j] += in.bias[j];
  }
}

constexpr MicroKernel kGenericKernel{"generic", kGenericTile, genericMicroKernel};

// ---- problem description ---------------------------------------------------------------------

// A logical (already transposed) matrix view: element (i, j) of op(X).
struct Operand {
  const float* data;
  int64_t ld;
  bool trans;  // true: op(X) = X^T, element (i, j) is data[j * ld + i]
};

struct Problem {
  int64_t M, N, K;
  float alpha, beta;
  Operand a, b;
  float* c;
  int64_t ldc;
  const GemmEpilogue* epilogue;  // null: none
  // The caller's C^T = op(B)^T op(A)^T is computed: element (i, j) of this product is
  // stored at c[j * ldc + i] (and the epilogue's bias is indexed by i).
  bool cTransposed;
};

// The epilogue on C[0:rows, 0:cols] (a finished tile), whose first column is column col0.
void applyEpilogue(const GemmEpilogue& e, float* c, int64_t ldc, int64_t col0, int64_t rows,
                   int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = c + r * ldc;
    if (e.bias) {
      const float* bias = e.bias + col0;
      for (int64_t j = 0; j < cols; ++j) row[j] += bias[j];
    }
    if (e.rowMap) e.rowMap(e.context, row, cols);
  }
}

// dst[r * ldDst + c] = src[c * ldSrc + r] for r < rows, c < cols.
void transposeCopy(const float* src, int64_t ldSrc, float* dst, int64_t ldDst, int64_t rows,
                   int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[r * ldDst + c] = src[c * ldSrc + r];
}

// Upper bounds of the cache blocks; the actual blocks split each dimension evenly.
struct Blocking {
  int64_t mc, kc, nc;
};

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t roundUp(int64_t a, int64_t unit) { return ceilDiv(a, unit) * unit; }

// Block size for cutting `total` into the fewest blocks of at most `maxBlock`, made as even
// as possible and rounded up to `unit` (so e.g. K = 784 is cut 196 x 4, not 256 x 3 + 16).
inline int64_t evenBlock(int64_t total, int64_t maxBlock, int64_t unit) {
  const int64_t blocks = ceilDiv(total, maxBlock);
  return roundUp(ceilDiv(total, blocks), unit);
}

// ---- packing ---------------------------------------------------------------------------------
//
// A block of op(A) or op(B) is a kc x width slab indexed (k, i); it becomes ceil(width / P)
// panels of kc x P floats, k-major, zero-padded past `width`. Two storage cases cover all
// four transpose combinations:
//   - copy:      element (k, i) at src[k * ld + i]  (op(A) = A^T, op(B) = B):
//                the P values of one k are contiguous; rows are read in order.
//   - transpose: element (k, i) at src[i * ld + k]  (op(A) = A, op(B) = B^T):
//                each i is a contiguous run along k; 4 x 4 blocks are transposed in SSE
//                registers, which is several times faster than scattering scalars.

template <int P>
void packCopy(const float* src, int64_t ld, int64_t width, int64_t kc, float* dst) {
  const int64_t fullPanels = width / P;
  const int tail = static_cast<int>(width - fullPanels * P);
  const int64_t panelStride = P * kc;
  for (int64_t k = 0; k < kc; ++k) {
    const float* row = src + k * ld;
    float* out = dst + k * P;
    for (int64_t p = 0; p < fullPanels; ++p)
      std::memcpy(out + p * panelStride, row + p * P, sizeof(float) * P);
    if (tail) {  // a few floats: plain loops beat calls of memcpy and fill
      float* last = out + fullPanels * panelStride;
      const float* rest = row + fullPanels * P;
      for (int t = 0; t < tail; ++t) last[t] = rest[t];
      for (int t = tail; t < P; ++t) last[t] = 0.0f;
    }
  }
}

template <int P>
void packTranspose(const float* src, int64_t ld, int64_t width, int64_t kc, float* dst) {
  for (int64_t i0 = 0; i0 < width; i0 += P, dst += P * kc) {
    const int count = static_cast<int>(std::min<int64_t>(P, width - i0));
    const float* base = src + i0 * ld;
    int i = 0;
#if SG_GEMM_HAVE_SSE2
    const int64_t kc4 = kc & ~int64_t{3};
    for (; i + 4 <= count; i += 4) {
      const float* r0 = base + i * ld;
      const float* r1 = r0 + ld;
      const float* r2 = r1 + ld;
      const float* r3 = r2 + ld;
      for (int64_t k = 0; k < kc4; k += 4) {
        __m128 x0 = _mm_loadu_ps(r0 + k), x1 = _mm_loadu_ps(r1 + k);
        __m128 x2 = _mm_loadu_ps(r2 + k), x3 = _mm_loadu_ps(r3 + k);
        _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
        float* out = dst + k * P + i;
        _mm_storeu_ps(out, x0);
        _mm_storeu_ps(out + P, x1);
        _mm_storeu_ps(out + 2 * P, x2);
        _mm_storeu_ps(out + 3 * P, x3);
      }
      for (int64_t k = kc4; k < kc; ++k) {
        float* out = dst + k * P + i;
        out[0] = r0[k];
        out[1] = r1[k];
        out[2] = r2[k];
        out[3] = r3[k];
      }
    }
#endif
    for (; i < count; ++i) {
      const float* row = base + i * ld;
      for (int64_t k = 0; k < kc; ++k) dst[k * P + i] = row[k];
    }
    if (count < P)
      for (int64_t k = 0; k < kc; ++k) std::fill(dst + k * P + count, dst + (k + 1) * P, 0.0f);
  }
}

// op(A)[i0 : i0+rows, p0 : p0+kc] -> MR-row panels.
template <int MR>
void packA(const Operand& a, int64_t i0, int64_t rows, int64_t p0, int64_t kc, float* dst) {
  if (a.trans)
    packCopy<MR>(a.data + p0 * a.ld + i0, a.ld, rows, kc, dst);
  else
    packTranspose<MR>(a.data + i0 * a.ld + p0, a.ld, rows, kc, dst);
}

// op(B)[p0 : p0+kc, j0 : j0+cols] -> NR-column panels.
template <int NR>
void packB(const Operand& b, int64_t p0, int64_t kc, int64_t j0, int64_t cols, float* dst) {
  if (b.trans)
    packTranspose<NR>(b.data + j0 * b.ld + p0, b.ld, cols, kc, dst);
  else
    packCopy<NR>(b.data + p0 * b.ld + j0, b.ld, cols, kc, dst);
}

// Per-thread packing buffers, 64-byte aligned (one cache line, one zmm load), grown on
// demand and kept for reuse so steady-state calls never allocate or page-fault.
class PackBuffer {
 public:
  float* get(int64_t floats) {
    if (floats > capacity_) {
      data_.reset(static_cast<float*>(
          ::operator new(static_cast<size_t>(floats) * sizeof(float), std::align_val_t{64})));
      capacity_ = floats;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { ::operator delete(p, std::align_val_t{64}); }
  };
  std::unique_ptr<float, Free> data_;
  int64_t capacity_ = 0;
};

thread_local PackBuffer tlsPackedA;
thread_local PackBuffer tlsPackedB;
thread_local PackBuffer tlsTransposedC;  // a block of a product stored transposed

// ---- driver ----------------------------------------------------------------------------------

// Block sizes of one call, each cut evenly from the limits. kc depends on K alone: it fixes
// the summation order, so it must not depend on how C is split. mc/nc only reorder
// independent tiles.
struct Blocks {
  int64_t mc, kc, nc;
  int64_t kSlices;  // ceil(K / kc)
};

template <int MR, int NR>
Blocks chooseBlocks(const Problem& p, const Blocking& limits) {
  Blocks b;
  b.kc = evenBlock(p.K, limits.kc, 1);
  b.mc = evenBlock(p.M, limits.mc, MR);
  b.nc = evenBlock(p.N, limits.nc, NR);
  b.kSlices = ceilDiv(p.K, b.kc);
  return b;
}

// The caller's buffers for operands packed once and shared by all tasks of its call.
thread_local PackBuffer tlsSharedA;
thread_local PackBuffer tlsSharedB;

// One operand packed once per call and read by every task. Block i (an mc x kc block of
// op(A) or a kc x nc block of op(B)) is packed when a task first needs it, in groups of a
// few panels that tasks claim atomically: tasks arriving together pack one block together,
// and one that arrives while the last groups are being packed waits microseconds. Packing
// is a pure copy, so who packs what never changes the result.
class SharedPanels {
 public:
  // blockCount blocks of at most blockFloats floats (stored in `buffer`), each at most
  // maxWidth rows of op(A) (or columns of op(B)) cut into panels panelWidth (MR or NR) wide.
  SharedPanels(PackBuffer& buffer, int64_t blockCount, int64_t blockFloats, int64_t maxWidth,
               int panelWidth)
      : blockFloats_(blockFloats),
        groupWidth_(int64_t{kPanelsPerGroup} * panelWidth),
        groupsPerBlock_(ceilDiv(maxWidth, groupWidth_)),
        storage_(buffer.get(blockCount * blockFloats)),
        blockReady_(new std::atomic<bool>[static_cast<size_t>(blockCount)]),
        groupState_(new std::atomic<int>[static_cast<size_t>(blockCount * groupsPerBlock_)]) {
    for (int64_t i = 0; i < blockCount; ++i) blockReady_[i].store(false, std::memory_order_relaxed);
    for (int64_t i = 0; i < blockCount * groupsPerBlock_; ++i)
      groupState_[i].store(kEmpty, std::memory_order_relaxed);
  }

  // Packed block `index` of `width` rows/columns and depth kc. pack(first, count, dst)
  // packs rows/columns [first, first + count) of the block into dst.
  template <class PackFn>
  const float* block(int64_t index, int64_t width, int64_t kc, PackFn&& pack) {
    float* base = storage_ + index * blockFloats_;
    if (blockReady_[index].load(std::memory_order_acquire)) return base;
    const int64_t groups = ceilDiv(width, groupWidth_);
    std::atomic<int>* state = &groupState_[index * groupsPerBlock_];
    for (int64_t g = 0; g < groups; ++g) {
      int expected = kEmpty;
      if (state[g].load(std::memory_order_relaxed) != kEmpty ||
          !state[g].compare_exchange_strong(expected, kPacking, std::memory_order_acq_rel))
        continue;
      const int64_t first = g * groupWidth_;
      pack(first, std::min(groupWidth_, width - first), base + first * kc);
      state[g].store(kReady, std::memory_order_release);
    }
    for (int64_t g = 0; g < groups; ++g) {
      for (int spins = 0; state[g].load(std::memory_order_acquire) != kReady; ++spins) {
        if (spins < 4096) {
          cpuRelax();
        } else {
          std::this_thread::yield();  // the packer was descheduled: do not burn its core
        }
      }
    }
    blockReady_[index].store(true, std::memory_order_release);
    return base;
  }

 private:
  enum : int { kEmpty, kPacking, kReady };
  static constexpr int kPanelsPerGroup = 4;

  static void cpuRelax() {
#if SG_GEMM_HAVE_SSE2
    _mm_pause();
#endif
  }

  int64_t blockFloats_;
  int64_t groupWidth_;
  int64_t groupsPerBlock_;
  float* storage_;
  std::unique_ptr<std::atomic<bool>[]> blockReady_;
  std::unique_ptr<std::atomic<int>[]> groupState_;
};

// C[m0:m1, n0:n1] on the calling thread, all of K. Each operand comes either from a shared
// packing (which then spans the whole of M, resp. N), or is packed here into this thread's
// buffers, or is read in place: op(A) when the rectangle is one tile wide (each of its
// elements then meets a single panel of B, so packing it would copy it to read it once),
// else op(B) when the rectangle is one tile high and B is not transposed (rows of op(B) are
// then contiguous, as in a packed panel). The epilogue runs on each tile after its last K
// slice. A transposed product (p.cTransposed) is computed block by block in a scratch buffer
// and copied into C^T, then the epilogue runs on that part of C.
template <int MR, int NR>
void gemmRect(const Problem& p, const Blocks& blk, MicroKernelFn kernel, int64_t m0, int64_t m1,
              int64_t n0, int64_t n1, SharedPanels* sharedA, SharedPanels* sharedB) {
  const bool directA = n1 - n0 <= NR;
  const bool directB = !directA && m1 - m0 <= MR && !p.b.trans;
  float* ownA = sharedA || directA ? nullptr : tlsPackedA.get(blk.mc * blk.kc);
  float* ownB = sharedB || directB ? nullptr : tlsPackedB.get(blk.kc * blk.nc);

  for (int64_t jc = n0; jc < n1; jc += blk.nc) {
    const int64_t nc = std::min(blk.nc, n1 - jc);
    // The kernels store product element (i, jc + j) at out[(i - outRow0) * ldOut + j].
    float* out = p.c + jc;
    int64_t ldOut = p.ldc, outRow0 = 0;
    if (p.cTransposed) {
      out = tlsTransposedC.get((m1 - m0) * nc);
      ldOut = nc;
      outRow0 = m0;
      if (p.beta != 0.0f)  // the kernels read C's old values from the scratch block
        transposeCopy(p.c + jc * p.ldc + m0, p.ldc, out, ldOut, m1 - m0, nc);
    }
    for (int64_t slice = 0; slice < blk.kSlices; ++slice) {
      const int64_t pc = slice * blk.kc;
      const int64_t kc = std::min(blk.kc, p.K - pc);
      const bool lastSlice = slice + 1 == blk.kSlices;
      // Later K slices add onto what the earlier ones stored.
      const float beta = slice == 0 ? p.beta : 1.0f;
      const auto fillB = [&](int64_t first, int64_t count, float* dst) {
        packB<NR>(p.b, pc, kc, jc + first, count, dst);
      };
      const float* packedB = nullptr;  // stays null when op(B) is read in place
      if (sharedB && !directB) {
        packedB = sharedB->block(jc / blk.nc * blk.kSlices + slice, nc, kc, fillB);
      } else if (!directB) {
        fillB(0, nc, ownB);
        packedB = ownB;
      }
      for (int64_t ic = m0; ic < m1; ic += blk.mc) {
        const int64_t mc = std::min(blk.mc, m1 - ic);
        const auto fillA = [&](int64_t first, int64_t count, float* dst) {
          packA<MR>(p.a, ic + first, count, pc, kc, dst);
        };
        const float* packedA = nullptr;  // stays null when op(A) is read in place
        if (sharedA && !directA) {
          packedA = sharedA->block(ic / blk.mc * blk.kSlices + slice, mc, kc, fillA);
        } else if (!directA) {
          fillA(0, mc, ownA);
          packedA = ownA;
        }
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int cols = static_cast<int>(std::min<int64_t>(NR, nc - jr));
          TileInputs in{};
          // The bias of the epilogue is added by the kernel as it stores the tile.
          if (lastSlice && p.epilogue && p.epilogue->bias && !p.cTransposed)
            in.bias = p.epilogue->bias + jc + jr;
          if (directB) {
            in.b = p.b.data + pc * p.b.ld + (jc + jr);
            in.bStride = p.b.ld;
            in.bPacked = false;
          } else {
            in.b = packedB + jr * kc;
            in.bStride = NR;
            in.bPacked = true;
          }
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int rows = static_cast<int>(std::min<int64_t>(MR, mc - ir));
            const int64_t i = ic + ir;  // first row of the tile
            if (directA) {
              in.a = p.a.trans ? p.a.data + pc * p.a.ld + i : p.a.data + i * p.a.ld + pc;
              in.aStride = p.a.ld;
              in.aOrder = p.a.trans ? AOrder::RowsAdjacent : AOrder::KAdjacent;
            } else {
              in.a = packedA + ir * kc;
              in.aOrder = AOrder::Packed;
            }
            float* tile = out + (i - outRow0) * ldOut + jr;
            kernel(kc, in, tile, ldOut, rows, cols, p.alpha, beta);
            if (lastSlice && p.epilogue && p.epilogue->rowMap && !p.cTransposed)
              applyEpilogue({nullptr, p.epilogue->rowMap, p.epilogue->context}, tile, ldOut,
                            jc + jr, rows, cols);
          }
        }
      }
    }
    if (p.cTransposed) {
      float* cBlock = p.c + jc * p.ldc + m0;  // rows jc.. and columns m0.. of the caller's C
      transposeCopy(out, ldOut, cBlock, p.ldc, nc, m1 - m0);
      if (p.epilogue) applyEpilogue(*p.epilogue, cBlock, p.ldc, m0, nc, m1 - m0);
    }
  }
}

// Below this many multiply-adds per thread, waking a helper costs more than it saves: on
// the 2-core Zen 5 VM it was measured on, a sleeping pool worker takes tens of microseconds to
// start, while one core does 4M multiply-adds in ~35 us. Measured: 256 x 64 x 256 and
// 128 x 128 x 256 gain nothing from a second thread, 256 x 128 x 256 gains ~40%.
constexpr int64_t kMinMacsPerThread = int64_t{1} << 22;

// Tasks per thread: a helper that starts late, or a core busy with another stream, then
// just takes fewer tasks instead of finishing last.
constexpr int64_t kTasksPerThread = 8;

// Largest operand packed once and shared (8 MiB). Beyond it, shared blocks drop out of the
// caches before every task has used them, and packing privately (hot in the thread's own
// L2) measured as fast or faster; the repeated packing then costs under 1%.
constexpr int64_t kSharedBudgetFloats = int64_t{1} << 21;

// Rectangles gridRows x gridCols == threads, each a whole number of tiles, for products too
// large to share a packed operand. The slowest rectangle sets the time: its multiply
// (rows x cols per k) plus packing both operands (~16 multiply-adds per packed element,
// since packing moves scalars while the kernel does 32 FMAs per cycle).
struct Grid {
  int64_t rows = 1, cols = 1;
};

Grid chooseGrid(int64_t mTiles, int64_t nTiles, int mr, int nr, int64_t threads) {
  Grid best;
  double bestCost = 0;
  for (int64_t gr = 1; gr <= threads; ++gr) {
    if (threads % gr) continue;
    const int64_t gc = threads / gr;
    if (gr > mTiles || gc > nTiles) continue;
    const double rectM = static_cast<double>(ceilDiv(mTiles, gr) * mr);
    const double rectN = static_cast<double>(ceilDiv(nTiles, gc) * nr);
    const double cost = rectM * rectN + 16.0 * (rectM + rectN);
    if (best.rows * best.cols == 1 || cost < bestCost) {
      best = {gr, gc};
      bestCost = cost;
    }
  }
  return best;
}

template <int MR, int NR>
void runProduct(const Problem& p, const Blocking& limits, MicroKernelFn kernel) {
  const Blocks blk = chooseBlocks<MR, NR>(p, limits);
  const double macs = static_cast<double>(p.M) * p.N * p.K;  // double: no overflow
  const int64_t threads = static_cast<int64_t>(
      std::min<double>(sg::parallelism(), std::max(1.0, std::floor(macs / kMinMacsPerThread))));
  if (threads <= 1) {
    gemmRect<MR, NR>(p, blk, kernel, 0, p.M, 0, p.N, nullptr, nullptr);
    return;
  }

  // Preferred: tasks are mc x nc tiles of C, both operands packed once and shared. The
  // tiles are shrunk (N first, keeping the A blocks tall so each B micro-panel is reused
  // from L1 many times) until there are a few tasks per thread, but not below a size where
  // the kernel's data reuse would suffer.
  const int64_t wantedTasks = threads * kTasksPerThread;
  Blocks tiles = blk;
  for (;;) {
    const int64_t tasks = ceilDiv(p.M, tiles.mc) * ceilDiv(p.N, tiles.nc);
    if (tasks >= wantedTasks) break;
    if (tiles.nc >= 4 * NR) {
      tiles.nc = evenBlock(p.N, tiles.nc / 2, NR);
    } else if (tiles.mc >= 8 * MR) {
      tiles.mc = evenBlock(p.M, tiles.mc / 2, MR);
    } else {
      break;
    }
  }
  const int64_t rowBlocks = ceilDiv(p.M, tiles.mc), colBlocks = ceilDiv(p.N, tiles.nc);
  const int64_t sharedAFloats = rowBlocks * tiles.kSlices * tiles.mc * tiles.kc;
  const int64_t sharedBFloats = colBlocks * tiles.kSlices * tiles.kc * tiles.nc;
  if (sharedAFloats <= kSharedBudgetFloats && sharedBFloats <= kSharedBudgetFloats) {
    SharedPanels sharedA(tlsSharedA, rowBlocks * tiles.kSlices, tiles.mc * tiles.kc, tiles.mc,
                         MR);
    SharedPanels sharedB(tlsSharedB, colBlocks * tiles.kSlices, tiles.kc * tiles.nc, tiles.nc,
                         NR);
    // Row-major task order: consecutive tasks share an A block, so threads starting
    // together pack it together.
    sg::parallelFor(rowBlocks * colBlocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t m0 = t / colBlocks * tiles.mc, n0 = t % colBlocks * tiles.nc;
        gemmRect<MR, NR>(p, tiles, kernel, m0, std::min(p.M, m0 + tiles.mc), n0,
                         std::min(p.N, n0 + tiles.nc), &sharedA, &sharedB);
      }
    });
    return;
  }

  // Large products: one rectangle per thread, each packing its own operands.
  const int64_t mTiles = ceilDiv(p.M, MR), nTiles = ceilDiv(p.N, NR);
  const Grid grid = chooseGrid(mTiles, nTiles, MR, NR, threads);
  sg::parallelFor(grid.rows * grid.cols, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t gr = task / grid.cols, gc = task % grid.cols;
      const int64_t m0 = std::min(p.M, mTiles * gr / grid.rows * MR);
      const int64_t m1 = std::min(p.M, mTiles * (gr + 1) / grid.rows * MR);
      const int64_t n0 = std::min(p.N, nTiles * gc / grid.cols * NR);
      const int64_t n1 = std::min(p.N, nTiles * (gc + 1) / grid.cols * NR);
      if (m0 < m1 && n0 < n1) gemmRect<MR, NR>(p, blk, kernel, m0, m1, n0, n1, nullptr, nullptr);
    }
  });
}

// Whether to compute C as its transpose, C^T = op(B)^T op(A)^T (each element gets the same
// operations; see Problem::cTransposed). Worth it when an operand is read once (the other
// dimension fits one tile) and the transpose reads it in place instead of packing it:
//   - N fits one tile and A is stored transposed: op(A)^T = A is read in place as the vector
//     operand, M along the vector lanes, which it fills better than N (N = 10 fills 10 of 16);
//   - M fits one tile and B is stored transposed: op(B) would need a transposing pack, while
//     op(B)^T is read in place as the broadcast operand.
template <int MR, int NR, int Lanes>
bool computeTransposed(const Problem& p) {
  const auto laneUse = [](int64_t n) {
    return static_cast<double>(n) / static_cast<double>(roundUp(n, Lanes));
  };
  if (p.N <= NR) return p.a.trans && laneUse(p.M) > laneUse(p.N);
  return p.M <= MR && p.b.trans;
}

template <int MR, int NR, int Lanes>
void runGemm(const Problem& p, const Blocking& limits, MicroKernelFn kernel) {
  if (!computeTransposed<MR, NR, Lanes>(p)) {
    runProduct<MR, NR>(p, limits, kernel);
    return;
  }
  Problem t = p;
  t.M = p.N;
  t.N = p.M;
  t.a = {p.b.data, p.b.ld, !p.b.trans};  // op(B)^T
  t.b = {p.a.data, p.a.ld, !p.a.trans};  // op(A)^T
  t.cTransposed = true;
  runProduct<MR, NR>(t, limits, kernel);
}

// One selectable path: the kernel, its cache blocks, and the driver compiled for its tile.
struct Path {
  const MicroKernel* kernel;
  Blocking limits;
  void (*run)(const Problem&, const Blocking&, MicroKernelFn);
};

bool cpuHasAvx512() {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
  // __builtin_cpu_supports also requires the OS to save the zmm/ymm state (XGETBV).
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpuHasAvx2() {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

// The path for `isa` if this build and CPU can run it, else nullptr. Block limits (AVX-512,
// measured on Zen 5): a KC x NR micro-panel of B (32 KiB) is reused from the 48 KiB L1d, an
// MC x KC block of A (224 KiB) from the 1 MiB L2, a KC x NC block of B (2 MiB) from L3.
// Larger KC or MC measured no faster; smaller KC pays more C updates per multiply. Not
// retuned for Zen 4 (the later sessions' VMs: 32 KiB L1d, which the B micro-panel fills).
const Path* pathFor(const char* isa) {
  static const Path avx512{avx512MicroKernel(),
                           {16 * kAvx512Tile.mr, 256, 2048},
                           runGemm<kAvx512Tile.mr, kAvx512Tile.nr, kAvx512Tile.lanes>};
  static const Path avx2{avx2MicroKernel(),
                         {24 * kAvx2Tile.mr, 256, 2048},
                         runGemm<kAvx2Tile.mr, kAvx2Tile.nr, kAvx2Tile.lanes>};
  static const Path generic{&kGenericKernel,
                            {32 * kGenericTile.mr, 256, 1024},
                            runGemm<kGenericTile.mr, kGenericTile.nr, kGenericTile.lanes>};
  if (std::strcmp(isa, "avx512") == 0) return avx512.kernel && cpuHasAvx512() ? &avx512 : nullptr;
  if (std::strcmp(isa, "avx2") == 0) return avx2.kernel && cpuHasAvx2() ? &avx2 : nullptr;
  if (std::strcmp(isa, "generic") == 0) return &generic;
  return nullptr;
}

// The selected path; Path objects are immutable statics, so swapping the pointer is enough
// for selectSgemmIsa.
std::atomic<const Path*> activePathPtr{nullptr};

const Path& activePath() {
  const Path* path = activePathPtr.load(std::memory_order_acquire);
  if (path) return *path;
  static const Path* const detected = [] {
    const Path* chosen = nullptr;
    if (const char* env = std::getenv("SYNTHGRAD_SGEMM_ISA")) chosen = pathFor(env);
    for (const char* isa : {"avx512", "avx2", "generic"})
      if (!chosen) chosen = pathFor(isa);
    return chosen;
  }();
  const Path* expected = nullptr;
  activePathPtr.compare_exchange_strong(expected, detected, std::memory_order_acq_rel);
  return *activePathPtr.load(std::memory_order_acquire);
}

// C = beta * C (alpha == 0 or K == 0): no product to add, and A/B are not read.
void scaleC(float* c, int64_t ldc, int64_t M, int64_t N, float beta) {
  if (beta == 1.0f) return;
  for (int64_t i = 0; i < M; ++i) {
    float* row = c + i * ldc;
    if (beta == 0.0f) {
      std::fill(row, row + N, 0.0f);
    } else {
      for (int64_t j = 0; j < N; ++j) row[j] *= beta;
    }
  }
}

}  // namespace

bool selectSgemmIsa(const char* isa) {
  const Path* path = isa ? pathFor(isa) : nullptr;
  if (!path) return false;
  activePath();  // run detection first so it cannot overwrite this choice later
  activePathPtr.store(path, std::memory_order_release);
  return true;
}

}  // namespace gemm_detail

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc, const GemmEpilogue& epilogue) {
  using namespace gemm_detail;
  if (M <= 0 || N <= 0) return;
  const GemmEpilogue* tileEpilogue = epilogue.bias || epilogue.rowMap ? &epilogue : nullptr;
  if (K <= 0 || alpha == 0.0f) {
    scaleC(C, ldc, M, N, beta);
    if (tileEpilogue) applyEpilogue(epilogue, C, ldc, 0, M, N);
    return;
  }
  const Path& path = activePath();
  const Problem problem{M, N, K, alpha, beta, {A, lda, transA}, {B, ldb, transB}, C, ldc,
                        tileEpilogue, /*cTransposed=*/false};
  path.run(problem, path.limits, path.kernel->run);
}

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, GemmEpilogue{});
}

const char* sgemmIsa() { return gemm_detail::activePath().kernel->isa; }

int64_t sgemmDepthSlice(int64_t K) {
  using namespace gemm_detail;
  return K <= 0 ? 0 : evenBlock(K, activePath().limits.kc, 1);  // chooseBlocks' kc
}

}  // namespace sg::cpu
