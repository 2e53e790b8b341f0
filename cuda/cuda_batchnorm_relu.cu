// The CUDA backend's BatchNorm + ReLU ops (op table: batchNormReluForward/Backward), composed
// of the existing kernels rather than fused: the BatchNorm kernel, then the ReLU kernel in
// place (forward); the ReLU's backward into a scratch buffer, then BatchNorm's backward
// reading it. The same float operations as the two separate ops, so the results match the
// CPU's fused kernels bit for bit wherever the separate ops do. A fused kernel would save one
// pass over [rows, features] each way; not done yet.
// Part of the CUDA backend (cuda_backend.cu has the overview). Host code: the host emulation
// (test/cuda/host_emulation/run.sh) compiles it with g++ on a fake CUDA runtime.
#include "cuda_backend_impl.cuh"

namespace sg::cuda::runtime {

void CudaBackend::batchNormReluForward(Stream& s, const Tensor& x, const Tensor& gamma,
                                       const Tensor& beta, const Tensor& y,
                                       const Tensor& runningMean, const Tensor& runningVar,
                                       const Tensor& saveMean, const Tensor& saveInvStd,
                                       float momentum, float eps, bool training) {
  use();
  cudaStream_t st = rawStream(s);
  launchBatchNormForward(st, x.f32(), gamma.f32(), beta.f32(), y.f32(), runningMean.f32(),
                         runningVar.f32(), saveMean.f32(), saveInvStd.f32(), x.shape[0],
                         x.shape[1], momentum, eps, training);
  launchActivationForward(st, Activation::Relu, y.f32(), y.f32(), y.numel());
}

void CudaBackend::batchNormReluBackward(Stream& s, const Tensor& x, const Tensor& y,
                                        const Tensor& dy, const Tensor& gamma,
                                        const Tensor& saveMean, const Tensor& saveInvStd,
                                        const Tensor& dx, const Tensor& dgamma,
                                        const Tensor& dbeta) {
  use();
  if (y.numel() == 0) return;
  cudaStream_t st = rawStream(s);
  // The gradient at BatchNorm's output; released once its last use is enqueued (see
  // "Memory" in runtime_memory.cuh).
  std::shared_ptr<Storage> scratch = allocate(y.bytes());
  float* masked = static_cast<float*>(scratch->data());
  launchActivationBackward(st, Activation::Relu, y.f32(), dy.f32(), masked, y.numel());
  launchBatchNormBackward(st, x.f32(), masked, gamma.f32(), saveMean.f32(), saveInvStd.f32(),
                          dx.f32(), dgamma.f32(), dbeta.f32(), x.shape[0], x.shape[1]);
}

}  // namespace sg::cuda::runtime
