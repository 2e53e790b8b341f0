// Max and average pooling and the channels-last transpose on the CPU (see conv.h).
// Every (image, channel) plane is one task's: its outputs, and in the backwards its whole dx
// plane, zeroed then summed over the outputs in row-major order, so results do not depend on
// the thread count (and the CUDA kernels, which gather the same terms in the same order,
// match bit for bit).
#include <algorithm>

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

// The index in its plane of the window's maximum: the first of equal values in row-major
// order; the first NaN beats every number.
int64_t argmax(const float* plane, const Conv2dGeometry& g, const Window& win) {
  int64_t best = win.h0 * g.w + win.w0;
  float value = plane[best];
  for (int64_t ih = win.h0; ih < win.h1; ++ih)
    for (int64_t iw = win.w0; iw < win.w1; ++iw) {
      const float v = plane[ih * g.w + iw];
      if (v > value || (v != v && value == value)) value = v, best = ih * g.w + iw;
    }
  return best;
}

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
    for (int64_t oh = 0; oh < g.oh; ++oh)
      for (int64_t ow = 0; ow < g.ow; ++ow)
        y[out + oh * g.ow + ow] = x[in + argmax(x + in, g, windowAt(g, oh, ow))];
  });
}

void maxPool2dBackward(const float* x, const float* dy, float* dx, const Conv2dGeometry& g) {
  forEachPlane(g, [&](int64_t in, int64_t out) {
    std::fill(dx + in, dx + in + g.inPlane(), 0.0f);
    for (int64_t oh = 0; oh < g.oh; ++oh)
      for (int64_t ow = 0; ow < g.ow; ++ow)
        dx[in + argmax(x + in, g, windowAt(g, oh, ow))] += dy[out + oh * g.ow + ow];
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
