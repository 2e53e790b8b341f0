// CPU kernels of the convolution family on NCHW float32 buffers (conv.cpp, pool.cpp): the
// same conventions as kernels.h (parameter gradients accumulate, input gradients overwrite,
// results independent of the thread count). Geometry checked by core/ops.cpp.
#pragma once
#include <cstdint>

#include "../core/conv_geometry.h"

namespace sg::cpu {

// y [n, k, oh, ow] = conv(x [n, c, h, w], w [k, c, kh, kw]) + bias [k] (bias may be null).
void conv2dForward(const float* x, const float* w, const float* bias, float* y,
                   const Conv2dGeometry& g);
// From dy [n, k, oh, ow]: dx = the input gradient (overwrite), dw += the filter gradient,
// db += the bias gradient; each may be null to skip it.
void conv2dBackward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                    float* db, const Conv2dGeometry& g);

// Pools (g.k == g.c): windows g.kh x g.kw, padding at most half the window.
// Max: padding never wins; ties go to the first element in row-major window order; a NaN
// wins over every number (the first NaN).
void maxPool2dForward(const float* x, float* y, const Conv2dGeometry& g);
// dx = 0, then dy of each output added at its window's argmax (recomputed from x).
void maxPool2dBackward(const float* x, const float* dy, float* dx, const Conv2dGeometry& g);
// Mean of the window's image elements (padding not counted).
void avgPool2dForward(const float* x, float* y, const Conv2dGeometry& g);
// dx = 0, then each dy / count added to its window's image elements.
void avgPool2dBackward(const float* dy, float* dx, const Conv2dGeometry& g);

// y [b, n, m] = x [b, m, n] transposed per batch entry.
void swapLastAxes(const float* x, float* y, int64_t batch, int64_t m, int64_t n);

}  // namespace sg::cpu
