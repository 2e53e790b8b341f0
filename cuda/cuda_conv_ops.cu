// The CUDA backend: the convolution-family op methods (conv.cu's launchers), as cuda_ops.cu
// holds the others; arguments were checked by core/ops.cpp.
// Part of the CUDA backend (cuda_backend.cu has the overview). Host code: the host emulation
// (test/cuda/host_emulation/run.sh) compiles it with g++ on a fake CUDA runtime.
#include "conv.cuh"
#include "cuda_backend_impl.cuh"

namespace sg::cuda::runtime {
namespace {

Conv2dGeometry geometry(const Tensor& x, int64_t k, int64_t kernelH, int64_t kernelW,
                        int64_t strideH, int64_t strideW, int64_t padH, int64_t padW) {
  return conv2dGeometry(x.shape[0], x.shape[1], x.shape[2], x.shape[3], k, kernelH, kernelW,
                        strideH, strideW, padH, padW);
}

}  // namespace

void CudaBackend::conv2dForward(Stream& s, const Tensor& x, const Tensor& w, const Tensor& bias,
                                const Tensor& y, int64_t strideH, int64_t strideW, int64_t padH,
                                int64_t padW) {
  use();
  launchConv2dForward(rawStream(s), x.f32(), w.f32(), bias.storage ? bias.f32() : nullptr,
                      y.f32(),
                      geometry(x, w.shape[0], w.shape[2], w.shape[3], strideH, strideW, padH,
                               padW));
}

void CudaBackend::conv2dBackward(Stream& s, const Tensor& x, const Tensor& w, const Tensor& dy,
                                 const Tensor& dx, const Tensor& dw, const Tensor& db,
                                 int64_t strideH, int64_t strideW, int64_t padH, int64_t padW) {
  use();
  launchConv2dBackward(rawStream(s), x.f32(), w.f32(), dy.f32(),
                       dx.storage ? dx.f32() : nullptr, dw.storage ? dw.f32() : nullptr,
                       db.storage ? db.f32() : nullptr,
                       geometry(x, w.shape[0], w.shape[2], w.shape[3], strideH, strideW, padH,
                                padW));
}

void CudaBackend::maxPool2dForward(Stream& s, const Tensor& x, const Tensor& y, int64_t kernelH,
                                   int64_t kernelW, int64_t strideH, int64_t strideW,
                                   int64_t padH, int64_t padW) {
  use();
  launchPool2dForward(rawStream(s), x.f32(), y.f32(),
                      geometry(x, x.shape[1], kernelH, kernelW, strideH, strideW, padH, padW),
                      true);
}

void CudaBackend::maxPool2dBackward(Stream& s, const Tensor& x, const Tensor& dy,
                                    const Tensor& dx, int64_t kernelH, int64_t kernelW,
                                    int64_t strideH, int64_t strideW, int64_t padH,
                                    int64_t padW) {
  use();
  launchPool2dBackward(rawStream(s), x.f32(), dy.f32(), dx.f32(),
                       geometry(x, x.shape[1], kernelH, kernelW, strideH, strideW, padH, padW),
                       true);
}

void CudaBackend::avgPool2dForward(Stream& s, const Tensor& x, const Tensor& y, int64_t kernelH,
                                   int64_t kernelW, int64_t strideH, int64_t strideW,
                                   int64_t padH, int64_t padW) {
  use();
  launchPool2dForward(rawStream(s), x.f32(), y.f32(),
                      geometry(x, x.shape[1], kernelH, kernelW, strideH, strideW, padH, padW),
                      false);
}

void CudaBackend::avgPool2dBackward(Stream& s, const Tensor& dy, const Tensor& dx,
                                    int64_t kernelH, int64_t kernelW, int64_t strideH,
                                    int64_t strideW, int64_t padH, int64_t padW) {
  use();
  launchPool2dBackward(rawStream(s), nullptr, dy.f32(), dx.f32(),
                       geometry(dx, dx.shape[1], kernelH, kernelW, strideH, strideW, padH, padW),
                       false);
}

void CudaBackend::swapLastAxes(Stream& s, const Tensor& x, const Tensor& y) {
  use();
  launchSwapLastAxes(rawStream(s), x.f32(), y.f32(), x.shape[0], x.shape[1], x.shape[2]);
}

}  // namespace sg::cuda::runtime
