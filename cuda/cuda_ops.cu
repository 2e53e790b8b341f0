// The CUDA backend: the op methods. Each makes the device current (use()), then launches the
// op's kernels on the stream (kernels.cuh, gemm.cuh); arguments were checked by
// core/ops.cpp. Ops' scratch (GEMM split-K workspace, loss partials, label flags) is a Storage
// released right after its kernels are enqueued (see "Memory" in runtime_memory.cuh). Labels
// out of range are found on the device: reportLabelErrors hands the flag to the stream's next
// whenDone (read by that whenDone's one host function, with a read's copy: "Host work"). One method per op of the op table (core/op_table.json).
// Part of the CUDA backend (cuda_backend.cu has the overview). Host code: the host emulation
// (test/cuda/host_emulation/run.sh) compiles it with g++ on a fake CUDA runtime.
#include "cuda_backend_impl.cuh"

namespace sg::cuda::runtime {
namespace {

std::string labelError(const char* op, int64_t classes) {
  return std::string(op) + ": a label is outside [0, " + std::to_string(classes) + ")";
}

}  // namespace

void CudaBackend::copy(Stream& s, const Tensor& src, const Tensor& dst) {
  use();
  const size_t bytes = src.bytes();
  if (bytes == 0) return;
  CUDA_CHECK(cudaMemcpyAsync(dst.storage->data(), src.storage->data(), bytes,
                             cudaMemcpyDeviceToDevice, rawStream(s)));
}

void CudaBackend::fill(Stream& s, const Tensor& y, double value) {
  use();
  // Zeros (every gradient buffer, every step): all-zero bytes in float32 and int32, written
  // by the copy engine's memset rather than a kernel. -0.0 is not all-zero bytes.
  if (value == 0.0 && !std::signbit(value)) {
    if (y.bytes() > 0)
      CUDA_CHECK(cudaMemsetAsync(y.storage->data(), 0, y.bytes(), rawStream(s)));
    return;
  }
  if (y.dtype == DType::Int32)
    launchFillInt(rawStream(s), y.i32(), y.numel(), static_cast<int32_t>(value));
  else
    launchFill(rawStream(s), y.f32(), y.numel(), static_cast<float>(value));
}

void CudaBackend::axpby(Stream& s, float a, const Tensor& x, float b, const Tensor& y) {
  use();
  launchAxpby(rawStream(s), x.numel(), a, x.f32(), b, y.f32());
}

void CudaBackend::gemm(Stream& s, const Tensor& a, const Tensor& b, const Tensor& c, bool transA,
                       bool transB, float alpha, float beta) {
  use();
  const int64_t M = c.shape[0], N = c.shape[1], K = transA ? a.shape[0] : a.shape[1];
  std::shared_ptr<Storage> workspace = gemmWorkspace(M, N, K);
  launchSgemm(rawStream(s), transA, transB, M, N, K, alpha, a.f32(), a.shape[1], b.f32(),
              b.shape[1], beta, c.f32(), N, numSMs_, tf32Capable_, nullptr, -1,
              workspace ? static_cast<float*>(workspace->data()) : nullptr);
}  // workspace released here, after its last use was enqueued

void CudaBackend::linearForward(Stream& s, const Tensor& x, const Tensor& w, const Tensor& bias,
                                const Tensor& y, std::optional<Activation> act) {
  use();
  const int64_t B = x.shape[0], in = x.shape[1], out = w.shape[0];
  std::shared_ptr<Storage> workspace = gemmWorkspace(B, out, in);
  launchSgemm(rawStream(s), false, true, B, out, in, 1.0f, x.f32(), in, w.f32(), in, 0.0f,
              y.f32(), out, numSMs_, tf32Capable_, bias.storage ? bias.f32() : nullptr,
              act ? static_cast<int>(*act) : -1,
              workspace ? static_cast<float*>(workspace->data()) : nullptr);
}

void CudaBackend::addBias(Stream& s, const Tensor& y, const Tensor& bias) {
  use();
  launchAddBias(rawStream(s), y.f32(), bias.f32(), y.shape[0], y.shape[1]);
}

void CudaBackend::biasBackward(Stream& s, const Tensor& dy, const Tensor& dbias) {
  use();
  launchBiasBackward(rawStream(s), dy.f32(), dbias.f32(), dy.shape[0], dy.shape[1]);
}

void CudaBackend::activationForward(Stream& s, Activation act, const Tensor& x, const Tensor& y) {
  use();
  launchActivationForward(rawStream(s), act, x.f32(), y.f32(), x.numel());
}

void CudaBackend::activationBackward(Stream& s, Activation act, const Tensor& y, const Tensor& dy,
                                     const Tensor& dx) {
  use();
  launchActivationBackward(rawStream(s), act, y.f32(), dy.f32(), dx.f32(), y.numel());
}

void CudaBackend::batchNormForward(Stream& s, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                   const Tensor& y, const Tensor& runningMean, const Tensor& runningVar,
                                   const Tensor& saveMean, const Tensor& saveInvStd, float momentum,
                                   float eps, bool training) {
  use();
  launchBatchNormForward(rawStream(s), x.f32(), gamma.f32(), beta.f32(), y.f32(),
                         runningMean.f32(), runningVar.f32(), saveMean.f32(), saveInvStd.f32(),
                         x.shape[0], x.shape[1], momentum, eps, training);
}

void CudaBackend::batchNormBackward(Stream& s, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                                    const Tensor& saveMean, const Tensor& saveInvStd, const Tensor& dx,
                                    const Tensor& dgamma, const Tensor& dbeta) {
  use();
  launchBatchNormBackward(rawStream(s), x.f32(), dy.f32(), gamma.f32(), saveMean.f32(),
                          saveInvStd.f32(), dx.f32(), dgamma.f32(), dbeta.f32(), x.shape[0],
                          x.shape[1]);
}

void CudaBackend::softmaxCrossEntropyForward(Stream& s, const Tensor& logits, const Tensor& labels,
                                             const Tensor& probs, const Tensor& loss) {
  use();
  const int64_t rows = logits.shape[0], classes = logits.shape[1];
  // Scratch: rows doubles of per-row losses, then the label flag.
  const size_t flagOffset = static_cast<size_t>(rows) * sizeof(double);
  std::shared_ptr<Storage> scratch = allocate(flagOffset + sizeof(double));
  double* rowLoss = static_cast<double*>(scratch->data());
  int* flag = reinterpret_cast<int*>(static_cast<char*>(scratch->data()) + flagOffset);
  cudaStream_t st = rawStream(s);
  launchLabelCheck(st, labels.i32(), rows, classes, /*allowIgnored=*/true, flag);
  launchSoftmaxCrossEntropyForward(st, logits.f32(), labels.i32(), probs.f32(), loss.f32(),
                                   rows, classes, rowLoss, flag);
  reportLabelErrors(s, flag,
                    labelError("softmaxCrossEntropyForward", classes) +
                        " and is not -1 (a row without a target)");
}  // scratch released here, after its last use was enqueued

void CudaBackend::softmaxCrossEntropyBackward(Stream& s, const Tensor& probs, const Tensor& labels,
                                              const Tensor& dlogits, float scale) {
  use();
  launchSoftmaxCrossEntropyBackward(rawStream(s), probs.f32(), labels.i32(), dlogits.f32(),
                                    probs.shape[0], probs.shape[1], scale);
}

void CudaBackend::sigmoidCrossEntropyForward(Stream& s, const Tensor& logits, const Tensor& targets,
                                             const Tensor& probs, const Tensor& loss) {
  use();
  const int64_t rows = logits.shape[0];
  std::shared_ptr<Storage> scratch = allocate(std::max<size_t>(1, rows) * sizeof(double));
  launchSigmoidCrossEntropyForward(rawStream(s), logits.f32(), targets.f32(), probs.f32(),
                                   loss.f32(), rows, logits.shape[1],
                                   static_cast<double*>(scratch->data()));
}  // scratch released here, after its last use was enqueued

void CudaBackend::sigmoidCrossEntropyBackward(Stream& s, const Tensor& probs, const Tensor& targets,
                                              const Tensor& dlogits, float scale) {
  use();
  launchSigmoidCrossEntropyBackward(rawStream(s), probs.f32(), targets.f32(), dlogits.f32(),
                                    probs.numel(), scale);
}

void CudaBackend::lstmCellForward(Stream& s, const Tensor& gates, const Tensor& cPrev,
                                  const Tensor& c, const Tensor& h) {
  use();
  launchLstmCellForward(rawStream(s), gates.f32(), cPrev.f32(), c.f32(), h.f32(),
                        gates.shape[0], gates.shape[1] / 4);
}

void CudaBackend::lstmCellBackward(Stream& s, const Tensor& gates, const Tensor& cPrev,
                                   const Tensor& c, const Tensor& dh, const Tensor& dc,
                                   const Tensor& dgates, const Tensor& dcPrev) {
  use();
  launchLstmCellBackward(rawStream(s), gates.f32(), cPrev.f32(), c.f32(), dh.f32(),
                         dc.storage ? dc.f32() : nullptr, dgates.f32(), dcPrev.f32(),
                         gates.shape[0], gates.shape[1] / 4);
}

void CudaBackend::mseForward(Stream& s, const Tensor& pred, const Tensor& target,
                             const Tensor& loss) {
  use();
  const int64_t n = pred.numel();
  std::shared_ptr<Storage> scratch = allocate(mseScratchCount(n) * sizeof(double));
  launchMseForward(rawStream(s), pred.f32(), target.f32(), loss.f32(), n,
                   static_cast<double*>(scratch->data()));
}

void CudaBackend::mseBackward(Stream& s, const Tensor& pred, const Tensor& target, const Tensor& dpred,
                              float scale) {
  use();
  launchMseBackward(rawStream(s), pred.f32(), target.f32(), dpred.f32(), pred.numel(), scale);
}

void CudaBackend::oneHot(Stream& s, const Tensor& labels, const Tensor& out) {
  use();
  const int64_t rows = out.shape[0], classes = out.shape[1];
  std::shared_ptr<Storage> scratch = allocate(sizeof(int));
  int* flag = static_cast<int*>(scratch->data());
  cudaStream_t st = rawStream(s);
  launchLabelCheck(st, labels.i32(), rows, classes, /*allowIgnored=*/false, flag);
  launchOneHot(st, labels.i32(), out.f32(), rows, classes, flag);
  reportLabelErrors(s, flag, labelError("oneHot", classes));
}

void CudaBackend::concatColumns(Stream& s, const Tensor& a, const Tensor& b, const Tensor& out) {
  use();
  launchConcatColumns(rawStream(s), a.f32(), b.f32(), out.f32(), a.shape[0], a.shape[1],
                      b.shape[1]);
}

void CudaBackend::splitColumns(Stream& s, const Tensor& dout, const Tensor& da, const Tensor& db) {
  use();
  const int64_t colsA = da.storage ? da.shape[1] : dout.shape[1] - db.shape[1];
  launchSplitColumns(rawStream(s), dout.f32(), da.storage ? da.f32() : nullptr,
                     db.storage ? db.f32() : nullptr, dout.shape[0], colsA,
                     dout.shape[1] - colsA);
}

void CudaBackend::writeScalars(Stream& s, const Tensor& y, const std::vector<float>& values) {
  use();
  launchWriteScalars(rawStream(s), y.f32(), values);
}

void CudaBackend::sgdStepGroup(Stream& s, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                               const std::vector<Tensor>& velocities, const Tensor& hyper, float momentum,
                               float weightDecay) {
  use();
  std::vector<GroupTensor> group;
  for (size_t i = 0; i < params.size(); ++i)
    group.push_back({params[i].f32(), grads[i].f32(),
                     velocities.empty() ? nullptr : velocities[i].f32(), nullptr,
                     params[i].numel()});
  launchSgdStepGroup(rawStream(s), group, hyper.f32(), momentum, weightDecay);
}

void CudaBackend::adamStepGroup(Stream& s, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                                const std::vector<Tensor>& ms, const std::vector<Tensor>& vs,
                                const Tensor& hyper, float beta1, float beta2, float eps,
                                float weightDecay) {
  use();
  std::vector<GroupTensor> group;
  for (size_t i = 0; i < params.size(); ++i)
    group.push_back({params[i].f32(), grads[i].f32(), ms[i].f32(), vs[i].f32(),
                     params[i].numel()});
  launchAdamStepGroup(rawStream(s), group, hyper.f32(), beta1, beta2, eps, weightDecay);
}

// Scratch for a split-K GEMM (gemm.cu), or null when the product is not split. Released by
// the caller right after the launch, like every op's scratch (fenced before reuse).
std::shared_ptr<Storage> CudaBackend::gemmWorkspace(int64_t M, int64_t N, int64_t K) {
  const size_t floats = sgemmWorkspaceFloats(M, N, K, numSMs_, tf32Capable_);
  return floats > 0 ? allocate(floats * sizeof(float)) : nullptr;
}

// After an op that wrote `flag` on stream s: copy the flag to pinned memory; host work of the
// stream (runtime_streams.cuh, "Host work": no host function of its own, the next whenDone's
// does it) records `message` as the stream's error if it is set.
void CudaBackend::reportLabelErrors(Stream& s, const int* flag, std::string message) {
  CudaStream& cs = cudaStreamOf(s);
  if (cs.capturing()) return;  // no host callbacks in a graph (see "Graphs")
  size_t rounded = 0;
  int* pinned = static_cast<int*>(pinnedPool().take(sizeof(int), &rounded));
  const cudaError_t e =
      cudaMemcpyAsync(pinned, flag, sizeof(int), cudaMemcpyDeviceToHost, cs.raw());
  if (e != cudaSuccess) {
    pinnedPool().give(pinned, rounded);  // nothing was queued
    CUDA_CHECK(e);
  }
  cs.addHostWork([state = cs.state(), pinned, rounded, message = std::move(message)] {
    if (*pinned != 0) state->setError(message);
    pinnedPool().give(pinned, rounded);
  });
}

}  // namespace sg::cuda::runtime
