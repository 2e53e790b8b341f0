// 2-D convolution on the CPU: im2col + the project's sgemm (gemm.cpp).
//
// im2col rather than an implicit GEMM: sgemm's speed comes from packing plain row-major
// operands into its micro-panels, so an implicit GEMM would need a second, convolution-aware
// packing path inside gemm.cpp for every ISA kernel. With im2col the convolution runs on sgemm
// unchanged and inherits its speed, its threading and its bit-for-bit determinism; the price
// is the patch matrix (C KH KW rows, one column per output pixel), bounded by taking the batch
// in groups of images: about kGroupBudget floats per group, the group size fixed by the shapes
// alone, never by the thread count.
//
// Per group of G images, columns j = (image in group) * OH OW + output pixel:
//   forward:  col = im2col(x); Y [K, G OH OW] = W [K, C KH KW] col; y = Y in NCHW + bias
//   backward: dY [K, G OH OW] = dy gathered; dw += dY colᵀ (an sgemm whose inner dimension is
//             the group's pixels); dcol = Wᵀ dY; dx = col2im(dcol); db[k] += the sum of
//             dy[:, k] (in double, images then pixels in order)
// Determinism: sgemm is bit-identical for any thread count (it splits C, never K); dw sums the
// groups in order; every element that im2col, col2im and the copies write belongs to one task,
// which adds its terms in a fixed order (col2im: kernel row, kernel column, then pixels).
#include <algorithm>
#include <vector>

#include "../core/parallel.h"
#include "conv.h"
#include "kernels.h"

namespace sg::cpu {
namespace {

// Floats of the patch matrix plus the gathered output gradient per group: 32 MiB.
constexpr int64_t kGroupBudget = int64_t(1) << 23;
// About this many elements per parallelFor chunk.
constexpr int64_t kChunkElements = int64_t(1) << 14;

int64_t grainFor(int64_t elementsPerItem) {
  return std::max<int64_t>(1, kChunkElements / std::max<int64_t>(1, elementsPerItem));
}

int64_t groupSize(const Conv2dGeometry& g) {
  const int64_t perImage = std::max<int64_t>(1, (g.patch() + g.k) * g.outPlane());
  return std::clamp<int64_t>(kGroupBudget / perImage, 1, std::max<int64_t>(1, g.n));
}

// col [C KH KW, count OH OW] of images n0 .. n0 + count - 1 (zero where the window is in the
// padding); row r = (c, kh, kw).
void im2col(const float* x, const Conv2dGeometry& g, int64_t n0, int64_t count, float* col) {
  const int64_t ohw = g.outPlane(), ld = count * ohw;
  parallelFor(g.patch(), grainFor(ld), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r / (g.kh * g.kw), kh = r / g.kw % g.kh, kw = r % g.kw;
      for (int64_t i = 0; i < count; ++i) {
        const float* plane = x + ((n0 + i) * g.c + c) * g.inPlane();
        float* out = col + r * ld + i * ohw;
        for (int64_t oh = 0; oh < g.oh; ++oh, out += g.ow) {
          const int64_t ih = oh * g.sh - g.ph + kh;
          if (ih < 0 || ih >= g.h) {
            std::fill(out, out + g.ow, 0.0f);
            continue;
          }
          const float* row = plane + ih * g.w;
          for (int64_t ow = 0; ow < g.ow; ++ow) {
            const int64_t iw = ow * g.sw - g.pw + kw;
            out[ow] = iw >= 0 && iw < g.w ? row[iw] : 0.0f;
          }
        }
      }
    }
  });
}

// dx's planes of images n0 .. n0 + count - 1 from dcol (im2col's layout): each (image,
// channel) plane is zeroed and summed by one task, kernel offsets and pixels in order.
void col2im(const float* dcol, const Conv2dGeometry& g, int64_t n0, int64_t count, float* dx) {
  const int64_t ohw = g.outPlane(), ld = count * ohw;
  parallelFor(count * g.c, grainFor(g.kh * g.kw * ohw), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t i = p / g.c, c = p % g.c;
      float* plane = dx + ((n0 + i) * g.c + c) * g.inPlane();
      std::fill(plane, plane + g.inPlane(), 0.0f);
      for (int64_t kh = 0; kh < g.kh; ++kh)
        for (int64_t kw = 0; kw < g.kw; ++kw) {
          const float* src = dcol + ((c * g.kh + kh) * g.kw + kw) * ld + i * ohw;
          for (int64_t oh = 0; oh < g.oh; ++oh) {
            const int64_t ih = oh * g.sh - g.ph + kh;
            if (ih < 0 || ih >= g.h) continue;
            float* row = plane + ih * g.w;
            for (int64_t ow = 0; ow < g.ow; ++ow) {
              const int64_t iw = ow * g.sw - g.pw + kw;
              if (iw >= 0 && iw < g.w) row[iw] += src[oh * g.ow + ow];
            }
          }
        }
    }
  });
}

}  // namespace

void conv2dForward(const float* x, const float* w, const float* bias, float* y,
                   const Conv2dGeometry& g) {
  if (g.n == 0) return;
  const int64_t group = groupSize(g), ohw = g.outPlane(), patch = g.patch();
  std::vector<float> col(patch * group * ohw), out(g.k * group * ohw);
  for (int64_t n0 = 0; n0 < g.n; n0 += group) {
    const int64_t count = std::min(group, g.n - n0), ld = count * ohw;
    im2col(x, g, n0, count, col.data());
    sgemm(false, false, g.k, ld, patch, 1.0f, w, patch, col.data(), ld, 0.0f, out.data(), ld);
    parallelFor(count * g.k, grainFor(ohw), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t i = p / g.k, k = p % g.k;
        const float* src = out.data() + k * ld + i * ohw;
        float* dst = y + ((n0 + i) * g.k + k) * ohw;
        if (bias)
          for (int64_t q = 0; q < ohw; ++q) dst[q] = src[q] + bias[k];
        else
          std::copy(src, src + ohw, dst);
      }
    });
  }
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
  if ((!dx && !dw) || g.n == 0) return;
  const int64_t group = groupSize(g);
  std::vector<float> col(patch * group * ohw), dY(g.k * group * ohw);
  for (int64_t n0 = 0; n0 < g.n; n0 += group) {
    const int64_t count = std::min(group, g.n - n0), ld = count * ohw;
    parallelFor(count * g.k, grainFor(ohw), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t i = p / g.k, k = p % g.k;
        const float* src = dy + ((n0 + i) * g.k + k) * ohw;
        std::copy(src, src + ohw, dY.data() + k * ld + i * ohw);
      }
    });
    if (dw) {
      im2col(x, g, n0, count, col.data());
      sgemm(false, true, g.k, patch, ld, 1.0f, dY.data(), ld, col.data(), ld, 1.0f, dw, patch);
    }
    if (dx) {
      // col is free again: it takes the patch gradients.
      sgemm(true, false, patch, ld, g.k, 1.0f, w, patch, dY.data(), ld, 0.0f, col.data(), ld);
      col2im(col.data(), g, n0, count, dx);
    }
  }
}

}  // namespace sg::cpu
