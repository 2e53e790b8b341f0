// The convolution family on NCHW float32 (the CPU kernels are native/cpu/conv.cpp, pool.cpp):
// 2-D convolution forward and backward, max and average pooling forward and backward, and the
// [B, M, N] -> [B, N, M] transpose that BatchNorm2d runs the BatchNorm kernels through.
//
// Straightforward direct kernels, correct first (an implicit-GEMM convolution on gemm.cu's
// tiles is the fast path still to come):
//   - forward: one thread per output, summing its window over channels, kernel rows, columns;
//   - input gradient: one thread per input element, gathering the outputs whose windows
//     cover it (no atomics);
//   - filter and bias gradients: one block per filter element (per output channel for the
//     bias); its threads take strided slices of the (image, pixel) terms in double, then a
//     fixed tree reduction: deterministic, accumulated (+=) into dw / db;
//   - pools: the forward one thread per output; the backward one thread per input element,
//     gathering the outputs whose windows hold it in row-major order, with the argmax
//     recomputed from x as on the CPU: the CPU sums the same terms in the same order, so with
//     explicit roundings (__fadd_rn, __fdiv_rn) the pools match it bit for bit.
// Indices are 64-bit; ops.cpp caps strides, padding and windows at 2^31.
#include "check.cuh"
#include "common.cuh"
#include "conv.cuh"

namespace sg::cuda {
namespace {

// ============================================================================================
// kernels
// ============================================================================================
// (The host emulation, test/cuda/host_emulation/run.sh, runs the text between this banner
// line "// kernels" and the "// launchers" one on the CPU: keep both lines exactly as they are.)

constexpr int kConvReduceBlock = 256;  // threads of a filter- or bias-gradient block

// y [n, k, oh, ow] = sum over c, kh, kw of w [k, c, kh, kw] x [n, c, ih, iw] + bias[k].
__global__ void conv2dForwardKernel(const float* __restrict__ x, const float* __restrict__ w,
                                    const float* __restrict__ bias, float* __restrict__ y,
                                    Conv2dGeometry g) {
  const int64_t total = g.n * g.k * g.oh * g.ow;
  for (int64_t e = firstIndex(); e < total; e += gridStep()) {
    const int64_t ow = e % g.ow, oh = e / g.ow % g.oh, k = e / (g.ow * g.oh) % g.k,
                  n = e / (g.ow * g.oh * g.k);
    float acc = 0.0f;
    for (int64_t c = 0; c < g.c; ++c) {
      const float* plane = x + (n * g.c + c) * g.h * g.w;
      const float* filter = w + (k * g.c + c) * g.kh * g.kw;
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ih = oh * g.sh - g.ph + i;
        if (ih < 0 || ih >= g.h) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t iw = ow * g.sw - g.pw + j;
          if (iw >= 0 && iw < g.w) acc += filter[i * g.kw + j] * plane[ih * g.w + iw];
        }
      }
    }
    y[e] = bias ? acc + bias[k] : acc;
  }
}

// The outputs along one axis whose windows cover input coordinate `in`: [lo, hi].
__device__ __forceinline__ void coveringOutputs(int64_t in, int64_t pad, int64_t kernel,
                                                int64_t stride, int64_t outSize, int64_t& lo,
                                                int64_t& hi) {
  // out * stride - pad <= in < out * stride - pad + kernel
  const int64_t first = in + pad - kernel + 1;  // the least out * stride
  lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  hi = (in + pad) / stride;
  if (hi > outSize - 1) hi = outSize - 1;
}

// dx [n, c, ih, iw] = sum over the outputs covering it of dy [n, k, oh, ow] w [k, c, kh, kw].
__global__ void conv2dBackwardDataKernel(const float* __restrict__ w,
                                         const float* __restrict__ dy, float* __restrict__ dx,
                                         Conv2dGeometry g) {
  const int64_t total = g.n * g.c * g.h * g.w;
  for (int64_t e = firstIndex(); e < total; e += gridStep()) {
    const int64_t iw = e % g.w, ih = e / g.w % g.h, c = e / (g.w * g.h) % g.c,
                  n = e / (g.w * g.h * g.c);
    int64_t oh0, oh1, ow0, ow1;
    coveringOutputs(ih, g.ph, g.kh, g.sh, g.oh, oh0, oh1);
    coveringOutputs(iw, g.pw, g.kw, g.sw, g.ow, ow0, ow1);
    float acc = 0.0f;
    for (int64_t oh = oh0; oh <= oh1; ++oh) {
      const int64_t i = ih + g.ph - oh * g.sh;
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const int64_t j = iw + g.pw - ow * g.sw;
        for (int64_t k = 0; k < g.k; ++k)
          acc += dy[((n * g.k + k) * g.oh + oh) * g.ow + ow] *
                 w[((k * g.c + c) * g.kh + i) * g.kw + j];
      }
    }
    dx[e] = acc;
  }
}

// Sum of v over the block's kConvReduceBlock threads, valid in thread 0, in a fixed order.
__device__ __forceinline__ double blockSum(double v, double* red) {
  const int t = threadIdx.x;
  red[t] = v;
  __syncthreads();
  for (int s = kConvReduceBlock / 2; s > 0; s /= 2) {
    if (t < s) red[t] += red[t + s];
    __syncthreads();
  }
  return red[0];
}

// Block b owns filter element b = (k, c, kh, kw): dw[b] += sum over images and output pixels
// of dy [n, k, oh, ow] x [n, c, ih, iw] (terms in the padding are 0).
__global__ void conv2dBackwardFilterKernel(const float* __restrict__ x,
                                           const float* __restrict__ dy, float* dw,
                                           Conv2dGeometry g) {
  __shared__ double red[kConvReduceBlock];
  const int64_t filters = g.k * g.c * g.kh * g.kw, pixels = g.oh * g.ow;
  for (int64_t b = blockIdx.x; b < filters; b += gridDim.x) {
    const int64_t j = b % g.kw, i = b / g.kw % g.kh, c = b / (g.kw * g.kh) % g.c,
                  k = b / (g.kw * g.kh * g.c);
    double acc = 0.0;
    for (int64_t t = threadIdx.x; t < g.n * pixels; t += kConvReduceBlock) {
      const int64_t n = t / pixels, q = t % pixels, oh = q / g.ow, ow = q % g.ow;
      const int64_t ih = oh * g.sh - g.ph + i, iw = ow * g.sw - g.pw + j;
      if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w)
        acc += static_cast<double>(dy[(n * g.k + k) * pixels + q]) *
               x[((n * g.c + c) * g.h + ih) * g.w + iw];
    }
    const double total = blockSum(acc, red);
    if (threadIdx.x == 0) dw[b] += static_cast<float>(total);
    __syncthreads();  // red is reused by the next filter element
  }
}

// Block b owns output channel b: db[b] += sum of dy [:, b, :, :].
__global__ void conv2dBackwardBiasKernel(const float* __restrict__ dy, float* db,
                                         Conv2dGeometry g) {
  __shared__ double red[kConvReduceBlock];
  const int64_t pixels = g.oh * g.ow;
  for (int64_t k = blockIdx.x; k < g.k; k += gridDim.x) {
    double acc = 0.0;
    for (int64_t t = threadIdx.x; t < g.n * pixels; t += kConvReduceBlock)
      acc += dy[(t / pixels * g.k + k) * pixels + t % pixels];
    const double total = blockSum(acc, red);
    if (threadIdx.x == 0) db[k] += static_cast<float>(total);
    __syncthreads();
  }
}

// Output (oh, ow)'s window clipped to the image: rows [h0, h1), columns [w0, w1); never empty
// (padding is at most half the window).
struct PoolWindow {
  int64_t h0, h1, w0, w1;
};

__device__ __forceinline__ PoolWindow poolWindow(const Conv2dGeometry& g, int64_t oh,
                                                 int64_t ow) {
  const int64_t h = oh * g.sh - g.ph, w = ow * g.sw - g.pw;
  return {h < 0 ? 0 : h, h + g.kh < g.h ? h + g.kh : g.h, w < 0 ? 0 : w,
          w + g.kw < g.w ? w + g.kw : g.w};
}

// The index in its plane of the window's maximum: the first of equal values in row-major
// order, the first NaN before any number (cpu::maxPool2dForward's rule).
__device__ __forceinline__ int64_t poolArgmax(const float* plane, const Conv2dGeometry& g,
                                              const PoolWindow& win) {
  int64_t best = win.h0 * g.w + win.w0;
  float value = plane[best];
  for (int64_t ih = win.h0; ih < win.h1; ++ih)
    for (int64_t iw = win.w0; iw < win.w1; ++iw) {
      const float v = plane[ih * g.w + iw];
      if (v > value || (v != v && value == value)) {
        value = v;
        best = ih * g.w + iw;
      }
    }
  return best;
}

// One thread per output; average = the sum in row-major order / the image elements counted.
__global__ void pool2dForwardKernel(const float* __restrict__ x, float* __restrict__ y,
                                    Conv2dGeometry g, bool isMax) {
  const int64_t total = g.n * g.c * g.oh * g.ow;
  for (int64_t e = firstIndex(); e < total; e += gridStep()) {
    const int64_t ow = e % g.ow, oh = e / g.ow % g.oh, p = e / (g.ow * g.oh);
    const float* plane = x + p * g.h * g.w;
    const PoolWindow win = poolWindow(g, oh, ow);
    if (isMax) {
      y[e] = plane[poolArgmax(plane, g, win)];
    } else {
      float sum = 0.0f;
      for (int64_t ih = win.h0; ih < win.h1; ++ih)
        for (int64_t iw = win.w0; iw < win.w1; ++iw) sum = __fadd_rn(sum, plane[ih * g.w + iw]);
      y[e] = __fdiv_rn(sum, static_cast<float>((win.h1 - win.h0) * (win.w1 - win.w0)));
    }
  }
}

// One thread per input element: the outputs whose windows hold it, in row-major order, each
// adding its dy (max: when the element is its argmax) or dy / count (average).
__global__ void pool2dBackwardKernel(const float* __restrict__ x, const float* __restrict__ dy,
                                     float* __restrict__ dx, Conv2dGeometry g, bool isMax) {
  const int64_t total = g.n * g.c * g.h * g.w;
  for (int64_t e = firstIndex(); e < total; e += gridStep()) {
    const int64_t iw = e % g.w, ih = e / g.w % g.h, p = e / (g.w * g.h);
    const float* dyPlane = dy + p * g.oh * g.ow;
    int64_t oh0, oh1, ow0, ow1;
    coveringOutputs(ih, g.ph, g.kh, g.sh, g.oh, oh0, oh1);
    coveringOutputs(iw, g.pw, g.kw, g.sw, g.ow, ow0, ow1);
    float acc = 0.0f;
    for (int64_t oh = oh0; oh <= oh1; ++oh)
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const PoolWindow win = poolWindow(g, oh, ow);
        if (isMax) {
          if (poolArgmax(x + p * g.h * g.w, g, win) == ih * g.w + iw)
            acc = __fadd_rn(acc, dyPlane[oh * g.ow + ow]);
        } else {
          const float count = static_cast<float>((win.h1 - win.h0) * (win.w1 - win.w0));
          acc = __fadd_rn(acc, __fdiv_rn(dyPlane[oh * g.ow + ow], count));
        }
      }
    dx[e] = acc;
  }
}

// y [b, j, i] = x [b, i, j] for x [batch, m, n]; one thread per element of y (coalesced
// writes).
__global__ void swapLastAxesKernel(const float* __restrict__ x, float* __restrict__ y,
                                   int64_t batch, int64_t m, int64_t n) {
  const int64_t total = batch * m * n;
  for (int64_t e = firstIndex(); e < total; e += gridStep()) {
    const int64_t i = e % m, j = e / m % n, b = e / (m * n);
    y[e] = x[(b * m + i) * n + j];
  }
}

}  // namespace

// ============================================================================================
// launchers
// ============================================================================================

void launchConv2dForward(cudaStream_t stream, const float* x, const float* w, const float* bias,
                         float* y, const Conv2dGeometry& g) {
  const int64_t total = g.n * g.k * g.oh * g.ow;
  if (total <= 0) return;
  SG_LAUNCH(gridFor(total), kBlock, 0, stream, conv2dForwardKernel)(x, w, bias, y, g);
  CUDA_CHECK_LAUNCH();
}

void launchConv2dBackward(cudaStream_t stream, const float* x, const float* w, const float* dy,
                          float* dx, float* dw, float* db, const Conv2dGeometry& g) {
  if (g.n <= 0) return;  // dx is empty; nothing to accumulate
  if (db) {
    SG_LAUNCH(static_cast<unsigned>(std::min<int64_t>(g.k, kMaxBlocks)), kConvReduceBlock, 0,
              stream, conv2dBackwardBiasKernel)(dy, db, g);
    CUDA_CHECK_LAUNCH();
  }
  if (dw) {
    const int64_t filters = g.k * g.c * g.kh * g.kw;
    SG_LAUNCH(static_cast<unsigned>(std::min<int64_t>(filters, kMaxBlocks)), kConvReduceBlock,
              0, stream, conv2dBackwardFilterKernel)(x, dy, dw, g);
    CUDA_CHECK_LAUNCH();
  }
  if (dx) {
    const int64_t total = g.n * g.c * g.h * g.w;
    SG_LAUNCH(gridFor(total), kBlock, 0, stream, conv2dBackwardDataKernel)(w, dy, dx, g);
    CUDA_CHECK_LAUNCH();
  }
}

void launchPool2dForward(cudaStream_t stream, const float* x, float* y, const Conv2dGeometry& g,
                         bool isMax) {
  const int64_t total = g.n * g.c * g.oh * g.ow;
  if (total <= 0) return;
  SG_LAUNCH(gridFor(total), kBlock, 0, stream, pool2dForwardKernel)(x, y, g, isMax);
  CUDA_CHECK_LAUNCH();
}

void launchPool2dBackward(cudaStream_t stream, const float* x, const float* dy, float* dx,
                          const Conv2dGeometry& g, bool isMax) {
  const int64_t total = g.n * g.c * g.h * g.w;
  if (total <= 0) return;
  SG_LAUNCH(gridFor(total), kBlock, 0, stream, pool2dBackwardKernel)(x, dy, dx, g, isMax);
  CUDA_CHECK_LAUNCH();
}

void launchSwapLastAxes(cudaStream_t stream, const float* x, float* y, int64_t batch, int64_t m,
                        int64_t n) {
  const int64_t total = batch * m * n;
  if (total <= 0) return;
  SG_LAUNCH(gridFor(total), kBlock, 0, stream, swapLastAxesKernel)(x, y, batch, m, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace sg::cuda
