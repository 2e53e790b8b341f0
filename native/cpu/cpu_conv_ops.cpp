// The CPU backend's convolution-family ops (conv.h kernels), enqueued on the stream's worker
// like the others of cpu_ops.cpp; arguments were checked by core/ops.cpp.
#include "conv.h"
#include "cpu_op_queue.h"

namespace sg::cpu_backend {
namespace {

// The geometry of input x under a kernelH x kernelW window producing k channels.
Conv2dGeometry geometry(const Tensor& x, int64_t k, int64_t kernelH, int64_t kernelW,
                        int64_t strideH, int64_t strideW, int64_t padH, int64_t padW) {
  return conv2dGeometry(x.shape[0], x.shape[1], x.shape[2], x.shape[3], k, kernelH, kernelW,
                        strideH, strideW, padH, padW);
}

}  // namespace

void CpuBackend::conv2dForward(Stream& s, const Tensor& x, const Tensor& w, const Tensor& bias,
                               const Tensor& y, int64_t strideH, int64_t strideW, int64_t padH,
                               int64_t padW) {
  const Conv2dGeometry g =
      geometry(x, w.shape[0], w.shape[2], w.shape[3], strideH, strideW, padH, padW);
  enqueueOp(s, __func__, [=] {
    cpu::conv2dForward(x.f32(), w.f32(), bias.storage ? bias.f32() : nullptr, y.f32(), g);
  });
}

void CpuBackend::conv2dBackward(Stream& s, const Tensor& x, const Tensor& w, const Tensor& dy,
                                const Tensor& dx, const Tensor& dw, const Tensor& db,
                                int64_t strideH, int64_t strideW, int64_t padH, int64_t padW) {
  const Conv2dGeometry g =
      geometry(x, w.shape[0], w.shape[2], w.shape[3], strideH, strideW, padH, padW);
  enqueueOp(s, __func__, [=] {
    cpu::conv2dBackward(x.f32(), w.f32(), dy.f32(), dx.storage ? dx.f32() : nullptr,
                        dw.storage ? dw.f32() : nullptr, db.storage ? db.f32() : nullptr, g);
  });
}

void CpuBackend::maxPool2dForward(Stream& s, const Tensor& x, const Tensor& y, int64_t kernelH,
                                  int64_t kernelW, int64_t strideH, int64_t strideW,
                                  int64_t padH, int64_t padW) {
  const Conv2dGeometry g =
      geometry(x, x.shape[1], kernelH, kernelW, strideH, strideW, padH, padW);
  enqueueOp(s, __func__, [=] { cpu::maxPool2dForward(x.f32(), y.f32(), g); });
}

void CpuBackend::maxPool2dBackward(Stream& s, const Tensor& x, const Tensor& dy, const Tensor& dx,
                                   int64_t kernelH, int64_t kernelW, int64_t strideH,
                                   int64_t strideW, int64_t padH, int64_t padW) {
  const Conv2dGeometry g =
      geometry(x, x.shape[1], kernelH, kernelW, strideH, strideW, padH, padW);
  enqueueOp(s, __func__, [=] { cpu::maxPool2dBackward(x.f32(), dy.f32(), dx.f32(), g); });
}

void CpuBackend::avgPool2dForward(Stream& s, const Tensor& x, const Tensor& y, int64_t kernelH,
                                  int64_t kernelW, int64_t strideH, int64_t strideW,
                                  int64_t padH, int64_t padW) {
  const Conv2dGeometry g =
      geometry(x, x.shape[1], kernelH, kernelW, strideH, strideW, padH, padW);
  enqueueOp(s, __func__, [=] { cpu::avgPool2dForward(x.f32(), y.f32(), g); });
}

void CpuBackend::avgPool2dBackward(Stream& s, const Tensor& dy, const Tensor& dx,
                                   int64_t kernelH, int64_t kernelW, int64_t strideH,
                                   int64_t strideW, int64_t padH, int64_t padW) {
  const Conv2dGeometry g =
      geometry(dx, dx.shape[1], kernelH, kernelW, strideH, strideW, padH, padW);
  enqueueOp(s, __func__, [=] { cpu::avgPool2dBackward(dy.f32(), dx.f32(), g); });
}

void CpuBackend::swapLastAxes(Stream& s, const Tensor& x, const Tensor& y) {
  enqueueOp(s, __func__,
            [=] { cpu::swapLastAxes(x.f32(), y.f32(), x.shape[0], x.shape[1], x.shape[2]); });
}

}  // namespace sg::cpu_backend
