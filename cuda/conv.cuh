// Launchers of conv.cu: the convolution family on NCHW float32, the same semantics as the CPU
// kernels of native/cpu/conv.h (dx overwritten, dw and db accumulated). Like kernels.cuh: each
// enqueues on `stream`, returns at once, does nothing for empty inputs and throws
// std::runtime_error if a launch fails. Geometry checked by core/ops.cpp.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/conv_geometry.h"

namespace sg::cuda {

// y = conv(x, w) + bias (bias may be null).
void launchConv2dForward(cudaStream_t stream, const float* x, const float* w, const float* bias,
                         float* y, const Conv2dGeometry& g);
// dx = the input gradient, dw += the filter gradient, db += the bias gradient; each may be
// null to skip it.
void launchConv2dBackward(cudaStream_t stream, const float* x, const float* w, const float* dy,
                          float* dx, float* dw, float* db, const Conv2dGeometry& g);
// Max (isMax) or average pooling, g.k == g.c.
void launchPool2dForward(cudaStream_t stream, const float* x, float* y, const Conv2dGeometry& g,
                         bool isMax);
// dx overwritten; x is read only for max pooling (may be null for average).
void launchPool2dBackward(cudaStream_t stream, const float* x, const float* dy, float* dx,
                          const Conv2dGeometry& g, bool isMax);
// y [batch, n, m] = x [batch, m, n] transposed.
void launchSwapLastAxes(cudaStream_t stream, const float* x, float* y, int64_t batch, int64_t m,
                        int64_t n);

}  // namespace sg::cuda
