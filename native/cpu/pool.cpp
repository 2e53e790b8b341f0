// Max and average pooling and the channels-last transpose on the CPU (see conv.h).
// Every (image, channel) plane is one task's: its outputs, and in the backwards its whole dx
// plane, zeroed then summed over the outputs in row-major order, so results do not depend on
// the thread count (and the CUDA kernels, which gather the same terms in the same order,
// match bit for bit). Max pooling finds each window's argmax row by row (see Best).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>  // SSE2 is part of every x86-64 CPU: safe without run-time checks
#define SG_POOL_SSE2 1
#else
#define SG_POOL_SSE2 0
#endif

#include "../core/parallel.h"
#include "conv.h"

namespace sg::cpu {
namespace {

constexpr int64_t kChunkElements = int64_t(1) << 14;

int64_t grainFor(int64_t elementsPerItem) {
  return std::max<int64_t>(1, kChunkElements / std::max<int64_t>(1, elementsPerItem));
}

// The window of output (oh, ow), clipped to the image: rows [h0, h1), columns [w0, w1).
// Never empty: ops.cpp holds the padding to at most half the window.
struct Window {
  int64_t h0, h1, w0, w1;
  int64_t count() const { return (h1 - h0) * (w1 - w0); }
};

Window windowAt(const Conv2dGeometry& g, int64_t oh, int64_t ow) {
  const int64_t h = oh * g.sh - g.ph, w = ow * g.sw - g.pw;
  return {std::max<int64_t>(h, 0), std::min(h + g.kh, g.h), std::max<int64_t>(w, 0),
          std::min(w + g.kw, g.w)};
}

// The maximum so far of a window scanned in row-major order, and its index. update() takes a
// candidate that is larger, or the first NaN. The scan's result is then the window's first NaN
// if it has one, else the first element equal to its maximum; so a window can be scanned row
// by row (each row's winner by this rule), and the rows' winners combined in order by the
// same rule, with the same result.
//
// The update is branch-free (bit masks, not jumps): on real data the comparisons go either
// way at random, and mispredicted branches cost more than the comparisons.
struct Best {
  float value;
  int64_t index;
};

inline uint32_t bitsOf(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

inline void update(Best& best, float v, int64_t index) {
  const bool take = (v > best.value) | ((v != v) & (best.value == best.value));
  const uint32_t keep = uint32_t(take) - 1u;  // all ones: keep the current best
  const uint32_t bits = (bitsOf(best.value) & keep) | (bitsOf(v) & ~keep);
  std::memcpy(&best.value, &bits, sizeof bits);
  const int64_t keepIndex = int64_t(take) - 1;
  best.index = (best.index & keepIndex) | (index & ~keepIndex);
}

#if SG_POOL_SSE2
// update() on four windows at once: values v, their indices (two int64 per __m128i).
struct Best4 {
  __m128 value;
  __m128i index01, index23;
};

inline void update4(Best4& best, __m128 v, __m128i index01, __m128i index23) {
  const __m128 take = _mm_or_ps(_mm_cmpgt_ps(v, best.value),
                                _mm_and_ps(_mm_cmpunord_ps(v, v), _mm_cmpord_ps(best.value, best.value)));
  best.value = _mm_or_ps(_mm_and_ps(take, v), _mm_andnot_ps(take, best.value));
  const __m128i t = _mm_castps_si128(take);
  const __m128i t01 = _mm_unpacklo_epi32(t, t), t23 = _mm_unpackhi_epi32(t, t);
  best.index01 = _mm_or_si128(_mm_and_si128(t01, index01), _mm_andnot_si128(t01, best.index01));
  best.index23 = _mm_or_si128(_mm_and_si128(t23, index23), _mm_andnot_si128(t23, best.index23));
}

inline __m128i pair(int64_t a, int64_t b) { return _mm_set_epi64x(b, a); }
#endif

// The winner of each row segment of a plane for every output column: for input row ih and
// output column ow, the window's columns of that row. Values in rowValue[ih * ow + ...], and
// their plane indices in rowIndex. With SSE2, four output columns at a time where their
// windows lie inside the row.
void rowWinners(const float* plane, const Conv2dGeometry& g, float* rowValue, int64_t* rowIndex) {
  // Output columns [inA, inB) have unclipped windows: ow * sw - pw >= 0, ... + kw <= w.
  const int64_t inA = std::min(g.ow, (g.pw + g.sw - 1) / g.sw);
  const int64_t inB = g.w + g.pw < g.kw ? inA : std::clamp((g.w + g.pw - g.kw) / g.sw + 1, inA, g.ow);
  for (int64_t ih = 0; ih < g.h; ++ih) {
    const float* row = plane + ih * g.w;
    float* value = rowValue + ih * g.ow;
    int64_t* index = rowIndex + ih * g.ow;
    const int64_t base = ih * g.w;
    int64_t ow = 0;
    const auto scalar = [&](int64_t o) {
      const Window win = windowAt(g, 0, o);
      Best best{row[win.w0], base + win.w0};
      for (int64_t iw = win.w0 + 1; iw < win.w1; ++iw) update(best, row[iw], base + iw);
      value[o] = best.value;
      index[o] = best.index;
    };
    for (; ow < inA; ++ow) scalar(ow);
#if SG_POOL_SSE2
    for (; ow + 4 <= inB; ow += 4) {
      const int64_t i0 = ow * g.sw - g.pw, s = g.sw;  // lane l's window starts at i0 + l s
      const auto at = [&](int64_t kw) {
        return _mm_setr_ps(row[i0 + kw], row[i0 + s + kw], row[i0 + 2 * s + kw], row[i0 + 3 * s + kw]);
      };
      Best4 best{at(0), pair(base + i0, base + i0 + s), pair(base + i0 + 2 * s, base + i0 + 3 * s)};
      for (int64_t kw = 1; kw < g.kw; ++kw)
        update4(best, at(kw), pair(base + i0 + kw, base + i0 + s + kw),
                pair(base + i0 + 2 * s + kw, base + i0 + 3 * s + kw));
      _mm_storeu_ps(value + ow, best.value);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(index + ow), best.index01);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(index + ow + 2), best.index23);
    }
#endif
    for (; ow < g.ow; ++ow) scalar(ow);
  }
}

thread_local std::vector<float> tlsRowValues;
thread_local std::vector<int64_t> tlsRowIndices;

// The argmax of each output of the plane (the first NaN, else the first of equal maxima, in
// row-major window order) into argmax[oh * ow + ow] and its value into max (when not null).
void planeArgmax(const float* plane, const Conv2dGeometry& g, float* max, int64_t* argmax) {
  tlsRowValues.resize(static_cast<size_t>(g.h * g.ow));
  tlsRowIndices.resize(static_cast<size_t>(g.h * g.ow));
  const float* rowValue = tlsRowValues.data();
  const int64_t* rowIndex = tlsRowIndices.data();
  rowWinners(plane, g, tlsRowValues.data(), tlsRowIndices.data());
  for (int64_t oh = 0; oh < g.oh; ++oh) {
    const Window win = windowAt(g, oh, 0);  // its rows, the same for every column
    int64_t ow = 0;
#if SG_POOL_SSE2
    for (; ow + 4 <= g.ow; ow += 4) {
      const auto load = [&](int64_t ih, int64_t offset) {
        return _mm_loadu_si128(reinterpret_cast<const __m128i*>(rowIndex + ih * g.ow + ow + offset));
      };
      Best4 best{_mm_loadu_ps(rowValue + win.h0 * g.ow + ow), load(win.h0, 0), load(win.h0, 2)};
      for (int64_t ih = win.h0 + 1; ih < win.h1; ++ih)
        update4(best, _mm_loadu_ps(rowValue + ih * g.ow + ow), load(ih, 0), load(ih, 2));
      if (max) _mm_storeu_ps(max + oh * g.ow + ow, best.value);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(argmax + oh * g.ow + ow), best.index01);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(argmax + oh * g.ow + ow + 2), best.index23);
    }
#endif
    for (; ow < g.ow; ++ow) {
      Best best{rowValue[win.h0 * g.ow + ow], rowIndex[win.h0 * g.ow + ow]};
      for (int64_t ih = win.h0 + 1; ih < win.h1; ++ih)
        update(best, rowValue[ih * g.ow + ow], rowIndex[ih * g.ow + ow]);
      if (max) max[oh * g.ow + ow] = best.value;
      argmax[oh * g.ow + ow] = best.index;
    }
  }
}

thread_local std::vector<int64_t> tlsArgmax;

// body(inPlane, outPlane) for every (image, channel) plane, in parallel.
template <class Body>
void forEachPlane(const Conv2dGeometry& g, Body body) {
  parallelFor(g.n * g.c, grainFor(g.outPlane() * g.kh * g.kw + g.inPlane()),
              [&](int64_t p0, int64_t p1) {
                for (int64_t p = p0; p < p1; ++p) body(p * g.inPlane(), p * g.outPlane());
              });
}

}  // namespace

void maxPool2dForward(const float* x, float* y, const Conv2dGeometry& g) {
  forEachPlane(g, [&](int64_t in, int64_t out) {
    tlsArgmax.resize(static_cast<size_t>(g.outPlane()));
    planeArgmax(x + in, g, y + out, tlsArgmax.data());
  });
}

void maxPool2dBackward(const float* x, const float* dy, float* dx, const Conv2dGeometry& g) {
  forEachPlane(g, [&](int64_t in, int64_t out) {
    tlsArgmax.resize(static_cast<size_t>(g.outPlane()));
    const int64_t* argmax = tlsArgmax.data();
    planeArgmax(x + in, g, nullptr, tlsArgmax.data());
    float* plane = dx + in;
    std::fill(plane, plane + g.inPlane(), 0.0f);
    for (int64_t o = 0; o < g.outPlane(); ++o) plane[argmax[o]] += dy[out + o];
  });
}

void avgPool2dForward(const float* x, float* y, const Conv2dGeometry& g) {
  forEachPlane(g, [&](int64_t in, int64_t out) {
    for (int64_t oh = 0; oh < g.oh; ++oh)
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        const Window win = windowAt(g, oh, ow);
        float sum = 0.0f;
        for (int64_t ih = win.h0; ih < win.h1; ++ih)
          for (int64_t iw = win.w0; iw < win.w1; ++iw) sum += x[in + ih * g.w + iw];
        y[out + oh * g.ow + ow] = sum / static_cast<float>(win.count());
      }
  });
}

void avgPool2dBackward(const float* dy, float* dx, const Conv2dGeometry& g) {
  forEachPlane(g, [&](int64_t in, int64_t out) {
    std::fill(dx + in, dx + in + g.inPlane(), 0.0f);
    for (int64_t oh = 0; oh < g.oh; ++oh)
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        const Window win = windowAt(g, oh, ow);
        const float share = dy[out + oh * g.ow + ow] / static_cast<float>(win.count());
        for (int64_t ih = win.h0; ih < win.h1; ++ih)
          for (int64_t iw = win.w0; iw < win.w1; ++iw) dx[in + ih * g.w + iw] += share;
      }
  });
}

void swapLastAxes(const float* x, float* y, int64_t batch, int64_t m, int64_t n) {
  // 32 x 32 tiles so that both the reads and the writes stay within a few cache lines.
  constexpr int64_t T = 32;
  const int64_t tileRows = (m + T - 1) / T;
  parallelFor(batch * tileRows, grainFor(T * n), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / tileRows, i0 = (t % tileRows) * T, i1 = std::min(m, i0 + T);
      const float* src = x + b * m * n;
      float* dst = y + b * m * n;
      for (int64_t j0 = 0; j0 < n; j0 += T) {
        const int64_t j1 = std::min(n, j0 + T);
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t j = j0; j < j1; ++j) dst[j * m + i] = src[i * n + j];
      }
    }
  });
}

}  // namespace sg::cpu
