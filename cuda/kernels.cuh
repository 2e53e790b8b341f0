// Launchers of the CUDA backend's kernels (other than GEMM, see gemm.cuh), one section per
// file. Same semantics as the CPU kernels of native/cpu/kernels.h (parameter gradients
// accumulate, activation gradients overwrite). Each launcher enqueues on `stream`, returns at
// once, does nothing for empty inputs and throws std::runtime_error if a launch fails.
// Pointers are device pointers; scalars are passed by value.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/op_types.h"  // Activation, AdamScalars: shared with the CPU backend through core

namespace sg::cuda {

// ---- elementwise.cu --------------------------------------------------------------------------
void launchFill(cudaStream_t stream, float* y, int64_t n, float value);
void launchFillInt(cudaStream_t stream, int32_t* y, int64_t n, int32_t value);
// y = a * x + b * y (b == 0 ignores y)
void launchAxpby(cudaStream_t stream, int64_t n, float a, const float* x, float b, float* y);
// y[r, c] += bias[c]
void launchAddBias(cudaStream_t stream, float* y, const float* bias, int64_t rows, int64_t cols);
// dbias[c] += sum_r dy[r, c]  (deterministic)
void launchBiasBackward(cudaStream_t stream, const float* dy, float* dbias, int64_t rows,
                        int64_t cols);
void launchActivationForward(cudaStream_t stream, Activation act, const float* x, float* y,
                             int64_t n);
void launchActivationBackward(cudaStream_t stream, Activation act, const float* y,
                              const float* dy, float* dx, int64_t n);
// *flag = 1 if some labels[r] is outside [0, classes) (and, with allowIgnored, is not
// kIgnoredLabel), else 0 (one block; always writes).
void launchLabelCheck(cudaStream_t stream, const int32_t* labels, int64_t rows, int64_t classes,
                      bool allowIgnored, int* flag);
// out = onehot(labels), skipped entirely when *flag != 0 (set by launchLabelCheck).
void launchOneHot(cudaStream_t stream, const int32_t* labels, float* out, int64_t rows,
                  int64_t classes, const int* flag);
void launchConcatColumns(cudaStream_t stream, const float* a, const float* b, float* out,
                         int64_t rows, int64_t colsA, int64_t colsB);
// da/db may be null to skip that half.
void launchSplitColumns(cudaStream_t stream, const float* dout, float* da, float* db,
                        int64_t rows, int64_t colsA, int64_t colsB);

// ---- batchnorm.cu ----------------------------------------------------------------------------
void launchBatchNormForward(cudaStream_t stream, const float* x, const float* gamma,
                            const float* beta, float* y, float* runningMean, float* runningVar,
                            float* saveMean, float* saveInvStd, int64_t rows, int64_t cols,
                            float momentum, float eps, bool training);
void launchBatchNormBackward(cudaStream_t stream, const float* x, const float* dy,
                             const float* gamma, const float* saveMean, const float* saveInvStd,
                             float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols);

// ---- loss.cu ---------------------------------------------------------------------------------
// probs = softmax(logits), *loss = (sum over rows not labelled kIgnoredLabel of
// -log probs[r, labels[r]]) / rows. `rowLoss` is scratch of `rows` doubles; nothing is written
// when *flag != 0 (set by launchLabelCheck, allowIgnored, before).
void launchSoftmaxCrossEntropyForward(cudaStream_t stream, const float* logits,
                                      const int32_t* labels, float* probs, float* loss,
                                      int64_t rows, int64_t classes, double* rowLoss,
                                      const int* flag);
// dlogits = scale * (probs - onehot(labels)) / rows, ignored rows 0 (overwrite; dlogits may
// alias probs)
void launchSoftmaxCrossEntropyBackward(cudaStream_t stream, const float* probs,
                                       const int32_t* labels, float* dlogits, int64_t rows,
                                       int64_t classes, float scale);
// probs = sigmoid(logits), *loss = (1 / rows) sum of the binary cross-entropies against
// targets from the logits (cpu::sigmoidCrossEntropyForward); `rowLoss` is scratch of `rows`
// doubles.
void launchSigmoidCrossEntropyForward(cudaStream_t stream, const float* logits,
                                      const float* targets, float* probs, float* loss,
                                      int64_t rows, int64_t cols, double* rowLoss);
// dlogits = scale * (probs - targets) (overwrite; may alias probs or targets)
void launchSigmoidCrossEntropyBackward(cudaStream_t stream, const float* probs,
                                       const float* targets, float* dlogits, int64_t n,
                                       float scale);
// Scratch doubles that launchMseForward needs for n elements.
size_t mseScratchCount(int64_t n);
// *loss = mean (pred - target)^2; `partials` is scratch of mseScratchCount(n) doubles.
void launchMseForward(cudaStream_t stream, const float* pred, const float* target, float* loss,
                      int64_t n, double* partials);
// dpred = scale * 2 * (pred - target) / n (overwrite)
void launchMseBackward(cudaStream_t stream, const float* pred, const float* target, float* dpred,
                       int64_t n, float scale);

// ---- lstm.cu ---------------------------------------------------------------------------------
// One LSTM step (cpu::lstmCellForward): gates [rows, 4 hidden] pre-activations i | f | g | o
// become their activations in place; c = f cPrev + i g, h = o tanh(c).
void launchLstmCellForward(cudaStream_t stream, float* gates, const float* cPrev, float* c,
                           float* h, int64_t rows, int64_t hidden);
// Its backward (cpu::lstmCellBackward): dgates, dcPrev overwritten; dc may be null, and
// dcPrev may be dc.
void launchLstmCellBackward(cudaStream_t stream, const float* gates, const float* cPrev,
                            const float* c, const float* dh, const float* dc, float* dgates,
                            float* dcPrev, int64_t rows, int64_t hidden);

// ---- optimizer.cu ----------------------------------------------------------------------------
// velocity may be null when momentum == 0.
void launchSgdStep(cudaStream_t stream, float* param, const float* grad, float* velocity,
                   int64_t n, float lr, float momentum, float weightDecay);
void launchAdamStep(cudaStream_t stream, float* param, const float* grad, float* m, float* v,
                    int64_t n, float lr, float beta1, float beta2, float eps, float weightDecay,
                    int64_t step);
// Whole parameter groups (one launch per 32 tensors), scalars read from the device tensor
// `hyper` when the kernel runs (graph replays see new values), gradients zeroed.
struct GroupTensor {
  float* param;
  float* grad;
  float* state0;  // SGD velocity (null without momentum) / Adam m
  float* state1;  // Adam v
  int64_t n;
};
// hyper = [lr]
void launchSgdStepGroup(cudaStream_t stream, const std::vector<GroupTensor>& group,
                        const float* hyper, float momentum, float weightDecay);
// hyper = [lr / (1 - beta1^t), sqrt(1 - beta2^t)] (adamScalars, core/op_types.h)
void launchAdamStepGroup(cudaStream_t stream, const std::vector<GroupTensor>& group,
                         const float* hyper, float beta1, float beta2, float eps,
                         float weightDecay);
// y[i] = values[i], 1..16 values, stream-ordered
void launchWriteScalars(cudaStream_t stream, float* y, const std::vector<float>& values);

}  // namespace sg::cuda
