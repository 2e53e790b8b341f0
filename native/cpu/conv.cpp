// 2-D convolution on the CPU: im2col + the project's sgemm (gemm.cpp), block by block.
//
// im2col rather than an implicit GEMM: sgemm's speed comes from packing plain row-major
// operands into its micro-panels, so an implicit GEMM would need a second, convolution-aware
// packing path inside gemm.cpp for every ISA kernel. With im2col the convolution runs on sgemm
// unchanged and inherits its speed and its bit-for-bit determinism.
//
// The patch matrix col [C KH KW, N OH OW] (row r = (c, kh, kw), column j = image * OH OW +
// output pixel) is never built whole: each task builds a block of its columns small enough to
// stay in the core's L2 cache, runs a single-threaded sgemm on it, and the tasks run in
// parallel (sgemm alone would split only its output, which here is a few filter rows, and read
// a patch matrix of tens of MiB from memory).
//   forward:  per block of columns, Yᵀ [cols, K] = colᵀ Wᵀ; y = Y in NCHW + bias. (With the
//             filters as sgemm's N, a few dozen, they run along its vector lanes and col is
//             read in place; Y = W col would pack col and fill few of the kernel's rows.)
//   dx:       per image, per block of output rows (bottom up), dcol = Wᵀ dy[image] (dy's plane
//             is already [K, OH OW]), then added into dx's planes (col2im).
//   dw:       dw += dY colᵀ, whose inner dimension (all the columns) is cut into the slices in
//             which sgemm would sum it (sgemmDepthSlice); each slice is a task computing its
//             part as dwᵀ = col dYᵀ (col read in place again), and the parts are added to dw
//             in slice order.
//   db:       db[k] += the sum of dy[:, k] (in double, images then pixels in order).
//
// Determinism and rounding: every result is bit-identical for any thread count, and to the
// plain im2col + one sgemm per group of images that this file computed before:
//   - forward and dcol: an element of an sgemm product does not depend on how the columns
//     are cut or whether the product is computed transposed (sgemm's inner dimension, the
//     patch or K, is whole in every call, and it sums it in the same order either way);
//   - dw: sgemm(beta = 1) adds each depth slice's fresh accumulator to dw in order; here each
//     slice is an sgemm of depth at most one slice (one accumulator, beta = 0), and the
//     slices are added to dw in the same order. The slices are those of the former groups of
//     images (groupSize), which are fixed by the shapes alone;
//   - dx: every dx element is the sum, from zero, of its terms in (c, kh, kw) order. Blocks of
//     output rows run from the bottom up because a larger kernel row kh reaches a given input
//     row from a smaller output row; inside a block the loops run kh, kw, then pixels.
#include <algorithm>
#include <memory>
#include <vector>

#include "../core/parallel.h"
#include "conv.h"
#include "kernels.h"

// A pure copy gives the same floats with any instructions: on x86-64 with g++ and glibc (whose
// ifuncs pick the CPU's best at load time), the copy loops are compiled for AVX-512 and AVX2 too.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__)
#define SG_CONV_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SG_CONV_CLONES
#endif

namespace sg::cpu {
namespace {

// Floats of a block of the patch matrix (or of patch gradients): 256 KiB, in L2 with room
// for sgemm's packed panels.
constexpr int64_t kBlockFloats = int64_t(1) << 16;
// But at least this many columns per block: each block's sgemm packs the filters (C KH KW x
// K floats) again, which wider blocks amortise.
constexpr int64_t kMinBlockColumns = 128;
// The partial filter gradients of at most this many floats are held at once (4 MiB).
constexpr int64_t kPartialFloats = int64_t(1) << 20;
// About this many elements per parallelFor chunk of the element-wise passes.
constexpr int64_t kChunkElements = int64_t(1) << 14;

int64_t grainFor(int64_t elementsPerItem) {
  return std::max<int64_t>(1, kChunkElements / std::max<int64_t>(1, elementsPerItem));
}

// The filter gradient's summation groups: images [n0, n0 + groupSize) form one sgemm inner
// dimension, cut into sgemm's depth slices. (They were the groups of the patch matrix held
// whole, about 2^23 floats; kept so that dw keeps its rounding.)
int64_t groupSize(const Conv2dGeometry& g) {
  const int64_t perImage = std::max<int64_t>(1, (g.patch() + g.k) * g.outPlane());
  return std::clamp<int64_t>((int64_t(1) << 23) / perImage, 1, std::max<int64_t>(1, g.n));
}

// A per-thread scratch buffer, grown on demand and kept (no allocation in steady state).
class Scratch {
 public:
  float* get(int64_t floats) {
    if (floats > capacity_) {
      data_.reset(new float[static_cast<size_t>(floats)]);
      capacity_ = floats;
    }
    return data_.get();
  }

 private:
  std::unique_ptr<float[]> data_;
  int64_t capacity_ = 0;
};

thread_local Scratch tlsColumns;   // a block of the patch matrix (or of its gradient)
thread_local Scratch tlsProduct;   // a block of Y (forward) or of dY (filter gradient)
thread_local Scratch tlsPartials;  // the caller's partial filter gradients

// The output columns ow in [lo, hi) whose input column ow * sw - pw + kw lies in the image.
struct ValidColumns {
  int64_t lo, hi;
};

ValidColumns validColumns(const Conv2dGeometry& g, int64_t kw) {
  const int64_t first = g.pw - kw, last = g.w - 1 + g.pw - kw;  // ow * sw must be in [first, last]
  const int64_t lo = first <= 0 ? 0 : std::min(g.ow, (first + g.sw - 1) / g.sw);
  const int64_t hi = last < 0 ? 0 : std::min(g.ow, last / g.sw + 1);
  return {lo, std::max(lo, hi)};
}

// A run of patch-matrix columns that lies in one output row of one image.
struct Segment {
  int64_t offset;  // its first column, counted from the block's first
  int64_t image;   // x's offset of the image's first plane
  int64_t ih;      // the input row of kernel row 0
  int64_t a, b;    // output columns [a, b) of the row
};

// The runs of columns j0 .. j1 - 1, in order.
void segmentsOf(const Conv2dGeometry& g, int64_t j0, int64_t j1, std::vector<Segment>& out) {
  const int64_t ohw = g.outPlane();
  out.clear();
  for (int64_t j = j0; j < j1;) {
    const int64_t image = j / ohw, oh = j % ohw / g.ow, a = j % ohw % g.ow;
    const int64_t b = std::min(g.ow, a + (j1 - j));
    out.push_back({j - j0, image * g.c * g.inPlane(), oh * g.sh - g.ph, a, b});
    j += b - a;
  }
}

thread_local std::vector<Segment> tlsSegments;
thread_local std::vector<ValidColumns> tlsValid;

// col [C KH KW, j1 - j0]: columns j0 .. j1 - 1 of the patch matrix (zero where the window
// lies in the padding). Plain loops rather than memcpy/memset: the runs are a few dozen
// floats, too short to pay for a call (and the attribute keeps g++ from making them calls).
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
SG_CONV_CLONES void im2colRange(const float* x, const Conv2dGeometry& g, int64_t j0, int64_t j1,
                                float* col) {
  const int64_t ld = j1 - j0;
  std::vector<Segment>& segments = tlsSegments;
  segmentsOf(g, j0, j1, segments);
  std::vector<ValidColumns>& valid = tlsValid;
  valid.resize(static_cast<size_t>(g.kw));
  for (int64_t kw = 0; kw < g.kw; ++kw) valid[kw] = validColumns(g, kw);
  // Per segment and input row (c, kh), the KW rows of col for kw = 0 .. KW - 1 copy the same
  // input row, shifted.
  for (const Segment& s : segments) {
    const int64_t width = s.b - s.a;
    for (int64_t c = 0; c < g.c; ++c)
      for (int64_t kh = 0; kh < g.kh; ++kh) {
        float* out0 = col + ((c * g.kh + kh) * g.kw) * ld + s.offset;  // out[t]: column s.a + t
        const int64_t ih = s.ih + kh;
        if (ih < 0 || ih >= g.h) {
          for (int64_t kw = 0; kw < g.kw; ++kw) {
            float* out = out0 + kw * ld;
            for (int64_t t = 0; t < width; ++t) out[t] = 0.0f;
          }
          continue;
        }
        const float* row = x + s.image + (c * g.h + ih) * g.w;
        for (int64_t kw = 0; kw < g.kw; ++kw) {
          float* out = out0 + kw * ld;
          const int64_t shift = kw - g.pw;  // input column of output column ow: ow * sw + shift
          const int64_t lo = std::clamp(valid[kw].lo, s.a, s.b) - s.a;
          const int64_t hi = std::clamp(valid[kw].hi, s.a, s.b) - s.a;  // out[lo, hi) from x
          for (int64_t t = 0; t < lo; ++t) out[t] = 0.0f;
          if (g.sw == 1) {
            const float* in = row + (s.a + lo + shift);
            float* o = out + lo;
            for (int64_t t = 0; t < hi - lo; ++t) o[t] = in[t];
          } else {
            for (int64_t t = lo; t < hi; ++t) out[t] = row[(s.a + t) * g.sw + shift];
          }
          for (int64_t t = hi; t < width; ++t) out[t] = 0.0f;
        }
      }
  }
}

// rows [r0, r1) of a [rows, n OH OW] matrix in column order ↔ the NCHW tensor t [n, rows,
// OH OW]: calls f(matrix row pointer offset, tensor offset, length) for each run of columns
// j0 .. j1 - 1 that lies in one image.
template <class F>
void forEachImageRun(const Conv2dGeometry& g, int64_t rows, int64_t j0, int64_t j1, F f) {
  const int64_t ohw = g.outPlane();
  for (int64_t j = j0; j < j1;) {
    const int64_t image = j / ohw, q = j % ohw, len = std::min(ohw - q, j1 - j);
    f(j - j0, image * rows * ohw + q, len);
    j += len;
  }
}

// dx's plane of (image, c) += dcol's rows for c, whose columns are the output rows
// [oh0, oh0 + rows) of that image; kernel rows, kernel columns, then pixels in order.
void col2imRows(const float* __restrict dcol, int64_t ld, const Conv2dGeometry& g, int64_t c,
                int64_t oh0, int64_t rows, float* __restrict plane) {
  for (int64_t kh = 0; kh < g.kh; ++kh)
    for (int64_t kw = 0; kw < g.kw; ++kw) {
      const float* src = dcol + ((c * g.kh + kh) * g.kw + kw) * ld;
      const ValidColumns valid = validColumns(g, kw);
      for (int64_t oh = oh0; oh < oh0 + rows; ++oh) {
        const int64_t ih = oh * g.sh - g.ph + kh;
        if (ih < 0 || ih >= g.h) continue;
        const float* s = src + (oh - oh0) * g.ow;
        float* row = plane + ih * g.w;
        if (g.sw == 1) {
          float* d = row - g.pw + kw;
          for (int64_t ow = valid.lo; ow < valid.hi; ++ow) d[ow] += s[ow];
        } else {
          for (int64_t ow = valid.lo; ow < valid.hi; ++ow) row[ow * g.sw - g.pw + kw] += s[ow];
        }
      }
    }
}

}  // namespace

void conv2dForward(const float* x, const float* w, const float* bias, float* y,
                   const Conv2dGeometry& g) {
  if (g.n == 0) return;
  const int64_t patch = g.patch(), total = g.n * g.outPlane();
  // Columns per block: a multiple of 32 (whole vectors of the sgemm kernels).
  const int64_t block =
      std::min(total, std::max<int64_t>(kMinBlockColumns, kBlockFloats / patch / 32 * 32));
  const int64_t blocks = (total + block - 1) / block;
  parallelFor(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t j0 = b * block, j1 = std::min(total, j0 + block), cols = j1 - j0;
      float* col = tlsColumns.get(patch * cols);
      float* outT = tlsProduct.get(cols * g.k);
      im2colRange(x, g, j0, j1, col);
      // Yᵀ [cols, K] = colᵀ Wᵀ: the filters (a few dozen) run along sgemm's vector lanes and
      // col is read in place, where Y = W col would pack col into panels first.
      sgemm(true, true, cols, g.k, patch, 1.0f, col, cols, w, patch, 0.0f, outT, g.k);
      forEachImageRun(g, g.k, j0, j1, [&](int64_t from, int64_t to, int64_t len) {
        for (int64_t k = 0; k < g.k; ++k) {
          const float* src = outT + from * g.k + k;
          float* dst = y + to + k * g.outPlane();
          const float bk = bias ? bias[k] : 0.0f;
          if (bias) {
            for (int64_t q = 0; q < len; ++q) dst[q] = src[q * g.k] + bk;
          } else {
            for (int64_t q = 0; q < len; ++q) dst[q] = src[q * g.k];
          }
        }
      });
    }
  });
}

void conv2dBackward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                    float* db, const Conv2dGeometry& g) {
  const int64_t ohw = g.outPlane(), patch = g.patch();
  if (db)
    parallelFor(g.k, grainFor(g.n * ohw), [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        double sum = 0;
        for (int64_t n = 0; n < g.n; ++n) {
          const float* plane = dy + (n * g.k + k) * ohw;
          for (int64_t q = 0; q < ohw; ++q) sum += plane[q];
        }
        db[k] += static_cast<float>(sum);
      }
    });
  if (g.n == 0) return;

  if (dw) {
    // The depth slices, in summation order: [start, end) in columns of the patch matrix.
    std::vector<std::pair<int64_t, int64_t>> slices;
    const int64_t group = groupSize(g);
    for (int64_t n0 = 0; n0 < g.n; n0 += group) {
      const int64_t first = n0 * ohw, depth = std::min(group, g.n - n0) * ohw;
      const int64_t step = sgemmDepthSlice(depth);
      for (int64_t s = 0; s < depth; s += step)
        slices.emplace_back(first + s, first + std::min(depth, s + step));
    }
    const int64_t dwSize = g.k * patch;
    const int64_t batch = std::clamp<int64_t>(kPartialFloats / dwSize, 1,
                                              static_cast<int64_t>(slices.size()));
    float* partials = tlsPartials.get(batch * dwSize);
    for (size_t s0 = 0; s0 < slices.size(); s0 += batch) {
      const int64_t count = std::min<int64_t>(batch, slices.size() - s0);
      parallelFor(count, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const auto [j0, j1] = slices[s0 + t];
          const int64_t cols = j1 - j0;
          float* col = tlsColumns.get(patch * cols);
          float* dY = tlsProduct.get(g.k * cols);
          im2colRange(x, g, j0, j1, col);
          forEachImageRun(g, g.k, j0, j1, [&](int64_t to, int64_t from, int64_t len) {
            for (int64_t k = 0; k < g.k; ++k)
              std::copy(dy + from + k * ohw, dy + from + k * ohw + len, dY + k * cols + to);
          });
          // The slice's dwᵀ [patch, K] = col dYᵀ: col is read in place (the filters run along
          // the vector lanes), where dY colᵀ would pack col, transposing it.
          sgemm(false, true, patch, g.k, cols, 1.0f, col, cols, dY, cols, 0.0f,
                partials + t * dwSize, g.k);
        }
      });
      parallelFor(g.k, grainFor(patch * count), [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k)
          for (int64_t t = 0; t < count; ++t) {
            const float* part = partials + t * dwSize + k;  // [patch, K]
            float* row = dw + k * patch;
            for (int64_t p = 0; p < patch; ++p) row[p] += part[p * g.k];
          }
      });
    }
  }

  if (dx) {
    // Output rows per block of patch gradients.
    const int64_t rowsPerBlock = std::clamp<int64_t>(
        std::max(kBlockFloats / patch, kMinBlockColumns) / g.ow, 1, g.oh);
    parallelFor(g.n, 1, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        float* image = dx + n * g.c * g.inPlane();
        std::fill(image, image + g.c * g.inPlane(), 0.0f);
        const float* dyImage = dy + n * g.k * ohw;
        for (int64_t end = g.oh; end > 0; end -= rowsPerBlock) {
          const int64_t oh0 = std::max<int64_t>(0, end - rowsPerBlock), rows = end - oh0;
          const int64_t cols = rows * g.ow;
          float* dcol = tlsColumns.get(patch * cols);
          sgemm(true, false, patch, cols, g.k, 1.0f, w, patch, dyImage + oh0 * g.ow, ohw, 0.0f,
                dcol, cols);
          for (int64_t c = 0; c < g.c; ++c)
            col2imRows(dcol, cols, g, c, oh0, rows, image + c * g.inPlane());
        }
      }
    });
  }
}

}  // namespace sg::cpu
