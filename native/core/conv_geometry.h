// The shape of a 2-D convolution or pooling over NCHW images, which core/ops.cpp computes and
// checks once and both backends' kernels take by value (a plain struct: nvcc and g++ agree).
#pragma once
#include <cstdint>

namespace sg {

struct Conv2dGeometry {
  int64_t n, c, h, w;  // the input x [n, c, h, w]
  int64_t k;           // output channels (a convolution's filters; a pool's = c)
  int64_t kh, kw;      // the window (kernel) size
  int64_t sh, sw;      // strides, >= 1
  int64_t ph, pw;      // zero padding on each side, >= 0
  int64_t oh, ow;      // the output's height and width: (h + 2 ph - kh) / sh + 1, ...

  int64_t inPlane() const { return h * w; }
  int64_t outPlane() const { return oh * ow; }
  // Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
  int64_t patch() const { return c * kh * kw; }
};

// The geometry of input [n, c, h, w], k output channels and the window; the arguments are
// trusted (checked by ops.cpp: the window fits the padded image, strides >= 1).
inline Conv2dGeometry conv2dGeometry(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k,
                                     int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                                     int64_t pw) {
  return {n, c, h, w, k, kh, kw, sh, sw, ph, pw, (h + 2 * ph - kh) / sh + 1,
          (w + 2 * pw - kw) / sw + 1};
}

}  // namespace sg
