// The CPU backend's ops: each method enqueues its kernels (kernels.h) on the stream's worker
// thread, which runs them in order; arguments were checked by core/ops.cpp. A kernel that finds
// bad data (a label out of range) throws on the worker: the stream's next whenDone reports it.
// One method per op of the op table (core/op_table.json, declared in gen/backend_overrides.inc).
#include <cstring>

#include "cpu_op_queue.h"
#include "gemm.h"
#include "kernels.h"

namespace sg::cpu_backend {

void CpuBackend::copy(Stream& s, const Tensor& src, const Tensor& dst) {
  enqueueOp(s, __func__,
            [src, dst] { std::memcpy(dst.storage->data(), src.storage->data(), src.bytes()); });
}

void CpuBackend::fill(Stream& s, const Tensor& y, double value) {
  enqueueOp(s, __func__, [y, value] {
    if (y.dtype == DType::Int32)
      cpu::fillInt(y.i32(), y.numel(), static_cast<int32_t>(value));
    else
      cpu::fill(y.f32(), y.numel(), static_cast<float>(value));
  });
}

void CpuBackend::axpby(Stream& s, float a, const Tensor& x, float b, const Tensor& y) {
  enqueueOp(s, __func__, [=] { cpu::axpby(x.numel(), a, x.f32(), b, y.f32()); });
}

void CpuBackend::gemm(Stream& s, const Tensor& a, const Tensor& b, const Tensor& c, bool transA,
                      bool transB, float alpha, float beta) {
  enqueueOp(s, __func__, [=] {
    int64_t M = c.shape[0], N = c.shape[1], K = transA ? a.shape[0] : a.shape[1];
    cpu::sgemm(transA, transB, M, N, K, alpha, a.f32(), a.shape[1], b.f32(), b.shape[1], beta,
               c.f32(), N);
  });
}

void CpuBackend::linearForward(Stream& s, const Tensor& x, const Tensor& w, const Tensor& bias,
                               const Tensor& y, std::optional<Activation> act) {
  enqueueOp(s, __func__, [=] {
    const int64_t B = x.shape[0], in = x.shape[1], out = w.shape[0];
    // Bias and activation on each tile of y while it is in the cache: the same values as
    // the gemm, addBias and activationForward ops in turn.
    cpu::GemmEpilogue epilogue;
    if (bias.storage) epilogue.bias = bias.f32();
    if (act) {
      epilogue.rowMap = [](const void* activation, float* row, int64_t n) {
        cpu::activationForward(*static_cast<const Activation*>(activation), row, row, n);
      };
      epilogue.context = &*act;
    }
    cpu::sgemm(false, true, B, out, in, 1.0f, x.f32(), in, w.f32(), in, 0.0f, y.f32(), out,
               epilogue);
  });
}

void CpuBackend::addBias(Stream& s, const Tensor& y, const Tensor& bias) {
  enqueueOp(s, __func__, [=] { cpu::addBias(y.f32(), bias.f32(), y.shape[0], y.shape[1]); });
}

void CpuBackend::biasBackward(Stream& s, const Tensor& dy, const Tensor& dbias) {
  enqueueOp(s, __func__,
            [=] { cpu::biasBackward(dy.f32(), dbias.f32(), dy.shape[0], dy.shape[1]); });
}

void CpuBackend::activationForward(Stream& s, Activation act, const Tensor& x, const Tensor& y) {
  enqueueOp(s, __func__, [=] { cpu::activationForward(act, x.f32(), y.f32(), x.numel()); });
}

void CpuBackend::activationBackward(Stream& s, Activation act, const Tensor& y, const Tensor& dy,
                                    const Tensor& dx) {
  enqueueOp(s, __func__,
            [=] { cpu::activationBackward(act, y.f32(), dy.f32(), dx.f32(), y.numel()); });
}

void CpuBackend::batchNormForward(Stream& s, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                  const Tensor& y, const Tensor& runningMean, const Tensor& runningVar,
                                  const Tensor& saveMean, const Tensor& saveInvStd, float momentum,
                                  float eps, bool training) {
  enqueueOp(s, __func__, [=] {
    cpu::batchNormForward(x.f32(), gamma.f32(), beta.f32(), y.f32(), runningMean.f32(),
                          runningVar.f32(), saveMean.f32(), saveInvStd.f32(), x.shape[0],
                          x.shape[1], momentum, eps, training);
  });
}

void CpuBackend::batchNormBackward(Stream& s, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                                   const Tensor& saveMean, const Tensor& saveInvStd, const Tensor& dx,
                                   const Tensor& dgamma, const Tensor& dbeta) {
  enqueueOp(s, __func__, [=] {
    cpu::batchNormBackward(x.f32(), dy.f32(), gamma.f32(), saveMean.f32(), saveInvStd.f32(),
                           dx.f32(), dgamma.f32(), dbeta.f32(), x.shape[0], x.shape[1]);
  });
}

// BatchNorm and the ReLU after it in the same passes (kernels.h): bit for bit the two ops.
void CpuBackend::batchNormReluForward(Stream& s, const Tensor& x, const Tensor& gamma,
                                      const Tensor& beta, const Tensor& y,
                                      const Tensor& runningMean, const Tensor& runningVar,
                                      const Tensor& saveMean, const Tensor& saveInvStd,
                                      float momentum, float eps, bool training) {
  enqueueOp(s, __func__, [=] {
    cpu::batchNormForward(x.f32(), gamma.f32(), beta.f32(), y.f32(), runningMean.f32(),
                          runningVar.f32(), saveMean.f32(), saveInvStd.f32(), x.shape[0],
                          x.shape[1], momentum, eps, training, /*relu=*/true);
  });
}

void CpuBackend::batchNormReluBackward(Stream& s, const Tensor& x, const Tensor& y,
                                       const Tensor& dy, const Tensor& gamma,
                                       const Tensor& saveMean, const Tensor& saveInvStd,
                                       const Tensor& dx, const Tensor& dgamma,
                                       const Tensor& dbeta) {
  enqueueOp(s, __func__, [=] {
    cpu::batchNormBackward(x.f32(), dy.f32(), gamma.f32(), saveMean.f32(), saveInvStd.f32(),
                           dx.f32(), dgamma.f32(), dbeta.f32(), x.shape[0], x.shape[1],
                           /*reluOutput=*/y.f32());
  });
}

void CpuBackend::softmaxCrossEntropyForward(Stream& s, const Tensor& logits, const Tensor& labels,
                                            const Tensor& probs, const Tensor& loss) {
  enqueueOp(s, __func__, [=] {
    if (!cpu::softmaxCrossEntropyForward(logits.f32(), labels.i32(), probs.f32(), loss.f32(),
                                         logits.shape[0], logits.shape[1]))
      throw std::runtime_error(labelError("softmaxCrossEntropyForward", logits.shape[1]) +
                               " and is not -1 (a row without a target)");
  });
}

void CpuBackend::softmaxCrossEntropyBackward(Stream& s, const Tensor& probs, const Tensor& labels,
                                             const Tensor& dlogits, float scale) {
  enqueueOp(s, __func__, [=] {
    cpu::softmaxCrossEntropyBackward(probs.f32(), labels.i32(), dlogits.f32(), probs.shape[0],
                                     probs.shape[1], scale);
  });
}

void CpuBackend::sigmoidCrossEntropyForward(Stream& s, const Tensor& logits, const Tensor& targets,
                                            const Tensor& probs, const Tensor& loss) {
  enqueueOp(s, __func__, [=] {
    cpu::sigmoidCrossEntropyForward(logits.f32(), targets.f32(), probs.f32(), loss.f32(),
                                    logits.shape[0], logits.shape[1]);
  });
}

void CpuBackend::sigmoidCrossEntropyBackward(Stream& s, const Tensor& probs, const Tensor& targets,
                                             const Tensor& dlogits, float scale) {
  enqueueOp(s, __func__, [=] {
    cpu::sigmoidCrossEntropyBackward(probs.f32(), targets.f32(), dlogits.f32(), probs.numel(),
                                     scale);
  });
}

void CpuBackend::lstmCellForward(Stream& s, const Tensor& gates, const Tensor& cPrev,
                                 const Tensor& c, const Tensor& h) {
  enqueueOp(s, __func__, [=] {
    cpu::lstmCellForward(gates.f32(), cPrev.f32(), c.f32(), h.f32(), gates.shape[0],
                         gates.shape[1] / 4);
  });
}

void CpuBackend::lstmCellBackward(Stream& s, const Tensor& gates, const Tensor& cPrev,
                                  const Tensor& c, const Tensor& dh, const Tensor& dc,
                                  const Tensor& dgates, const Tensor& dcPrev) {
  enqueueOp(s, __func__, [=] {
    cpu::lstmCellBackward(gates.f32(), cPrev.f32(), c.f32(), dh.f32(),
                          dc.storage ? dc.f32() : nullptr, dgates.f32(), dcPrev.f32(),
                          gates.shape[0], gates.shape[1] / 4);
  });
}

void CpuBackend::mseForward(Stream& s, const Tensor& pred, const Tensor& target,
                            const Tensor& loss) {
  enqueueOp(s, __func__,
            [=] { cpu::mseForward(pred.f32(), target.f32(), loss.f32(), pred.numel()); });
}

void CpuBackend::mseBackward(Stream& s, const Tensor& pred, const Tensor& target, const Tensor& dpred,
                             float scale) {
  enqueueOp(s, __func__,
            [=] { cpu::mseBackward(pred.f32(), target.f32(), dpred.f32(), pred.numel(), scale); });
}

void CpuBackend::oneHot(Stream& s, const Tensor& labels, const Tensor& out) {
  enqueueOp(s, __func__, [=] {
    if (!cpu::oneHot(labels.i32(), out.f32(), out.shape[0], out.shape[1]))
      throw std::runtime_error(labelError("oneHot", out.shape[1]));
  });
}

void CpuBackend::concatColumns(Stream& s, const Tensor& a, const Tensor& b, const Tensor& out) {
  enqueueOp(s, __func__, [=] {
    cpu::concatColumns(a.f32(), b.f32(), out.f32(), a.shape[0], a.shape[1], b.shape[1]);
  });
}

void CpuBackend::splitColumns(Stream& s, const Tensor& dout, const Tensor& da, const Tensor& db) {
  enqueueOp(s, __func__, [=] {
    int64_t colsA = da.storage ? da.shape[1] : dout.shape[1] - db.shape[1];
    cpu::splitColumns(dout.f32(), da.storage ? da.f32() : nullptr,
                      db.storage ? db.f32() : nullptr, dout.shape[0], colsA,
                      dout.shape[1] - colsA);
  });
}

void CpuBackend::writeScalars(Stream& s, const Tensor& y, const std::vector<float>& values) {
  enqueueOp(s, __func__, [y, values] { std::copy(values.begin(), values.end(), y.f32()); });
}

// The hyperparameters are read when the task runs, not when it is enqueued: a replayed
// graph then uses the values written before each launch. The whole group is one pass (one
// parallel loop over all its elements), the gradients zeroed in it.
void CpuBackend::sgdStepGroup(Stream& s, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                              const std::vector<Tensor>& velocities, const Tensor& hyper, float momentum,
                              float weightDecay) {
  enqueueOp(s, __func__, [=] {
    std::vector<cpu::GroupTensor> group(params.size());
    for (size_t i = 0; i < params.size(); ++i)
      group[i] = {params[i].f32(), grads[i].f32(),
                  velocities.empty() ? nullptr : velocities[i].f32(), nullptr, params[i].numel()};
    cpu::sgdStepGroup(group.data(), static_cast<int64_t>(group.size()), hyper.f32()[0], momentum,
                      weightDecay);
  });
}

void CpuBackend::adamStepGroup(Stream& s, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                               const std::vector<Tensor>& ms, const std::vector<Tensor>& vs,
                               const Tensor& hyper, float beta1, float beta2, float eps,
                               float weightDecay) {
  enqueueOp(s, __func__, [=] {
    std::vector<cpu::GroupTensor> group(params.size());
    for (size_t i = 0; i < params.size(); ++i)
      group[i] = {params[i].f32(), grads[i].f32(), ms[i].f32(), vs[i].f32(), params[i].numel()};
    const cpu::AdamScalars scalars{hyper.f32()[0], hyper.f32()[1]};
    cpu::adamStepGroup(group.data(), static_cast<int64_t>(group.size()), scalars, beta1, beta2,
                       eps, weightDecay);
  });
}

std::string CpuBackend::labelError(const char* op, int64_t classes) {
  return std::string(op) + ": a label is outside [0, " + std::to_string(classes) + ")";
}

}  // namespace sg::cpu_backend
