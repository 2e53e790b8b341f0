// CPU kernels: plain functions on raw, contiguous, row-major float32/int32 buffers.
//
// They know nothing of tensors, streams or Node.js: the CPU backend checks shapes and runs
// them on a pool thread, as a stream's task. Large loops split work with sg::parallelFor.
// Conventions (the same for the CUDA kernels):
//   - parameter gradients ACCUMULATE (+=): dW, db, dgamma, dbeta;
//   - activation gradients OVERWRITE (=): dx;
//   - reductions combine fixed-size chunks in a fixed order, so results do not depend on the
//     number of threads.
#pragma once
#include <cstdint>

#include "../core/op_types.h"

namespace sg::cpu {

// Shared with the CUDA kernels through core (core/op_types.h).
using sg::Activation;
using sg::AdamScalars;
using sg::adamScalars;

// ---- GEMM (gemm.cpp) -------------------------------------------------------------------
// C[M,N] = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T; lda/ldb/ldc are row strides.
// A is [M,K] (or [K,M] when transA), B is [K,N] (or [N,K] when transB).
// beta == 0 ignores C's old contents (NaN in C does not propagate).
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

// Which SIMD path sgemm uses on this CPU: "avx512", "avx2" or "generic".
const char* sgemmIsa();

// ---- elementwise and broadcast (kernels.cpp) --------------------------------------------
void fill(float* y, int64_t n, float value);
void fillInt(int32_t* y, int64_t n, int32_t value);
// y = a * x + b * y (b == 0 ignores y's old contents)
void axpby(int64_t n, float a, const float* x, float b, float* y);
// y[r, c] += bias[c] for y [rows, cols]
void addBias(float* y, const float* bias, int64_t rows, int64_t cols);
// dbias[c] += sum_r dy[r, c]
void biasBackward(const float* dy, float* dbias, int64_t rows, int64_t cols);

// y = act(x); in place allowed (y == x)
void activationForward(Activation act, const float* x, float* y, int64_t n);
// dx = dy * act'(.) computed from the forward OUTPUT y; in place allowed (dx == dy)
void activationBackward(Activation act, const float* y, const float* dy, float* dx, int64_t n);

// ---- BatchNorm over the batch dimension of x [rows, cols] (kernels.cpp) ------------------
// training: mean/var from the batch (biased var for normalising), saveMean/saveInvStd
//   written for backward, runningMean/runningVar updated as
//   running = (1 - momentum) * running + momentum * batchStat (unbiased var, as PyTorch).
// inference: normalises with runningMean/runningVar; saveMean/saveInvStd untouched.
// y = (x - mean) * invStd * gamma + beta
void batchNormForward(const float* x, const float* gamma, const float* beta, float* y,
                      float* runningMean, float* runningVar, float* saveMean, float* saveInvStd,
                      int64_t rows, int64_t cols, float momentum, float eps, bool training);
// Backward of training mode: dx overwritten, dgamma/dbeta accumulated.
void batchNormBackward(const float* x, const float* dy, const float* gamma,
                       const float* saveMean, const float* saveInvStd, float* dx,
                       float* dgamma, float* dbeta, int64_t rows, int64_t cols);

// ---- losses (kernels.cpp) ---------------------------------------------------------------
// logits [rows, classes], labels [rows] in [0, classes) or kIgnoredLabel. Writes probs =
// softmax(logits) (every row) and *loss = (sum over scored rows of -log p[label]) / rows: the
// divisor counts every row, so callers' gradient scales do not depend on how many rows are
// scored. Returns false (writing nothing else) if a label is out of range.
bool softmaxCrossEntropyForward(const float* logits, const int32_t* labels, float* probs,
                                float* loss, int64_t rows, int64_t classes);
// dlogits = scale * (probs - onehot(labels)) / rows, rows labelled kIgnoredLabel 0 (overwrite)
void softmaxCrossEntropyBackward(const float* probs, const int32_t* labels, float* dlogits,
                                 int64_t rows, int64_t classes, float scale);
// logits, targets, probs [rows, cols]; targets are used as given (meant to be in [0, 1]).
// probs = sigmoid(logits); *loss = (1 / rows) sum_r sum_k [max(z, 0) - z t + log(1 + e^-|z|)],
// the binary cross-entropy of sigmoid(z) against t computed from the logits (never a log of
// 0). Terms in double, each row summed in column order, rows added in row order.
void sigmoidCrossEntropyForward(const float* logits, const float* targets, float* probs,
                                float* loss, int64_t rows, int64_t cols);
// dlogits = scale * (probs - targets) over n elements (overwrite; no 1 / rows: the caller's
// scale carries it). dlogits may alias probs or targets.
void sigmoidCrossEntropyBackward(const float* probs, const float* targets, float* dlogits,
                                 int64_t n, float scale);
// *loss = mean over all n elements of (pred - target)^2
void mseForward(const float* pred, const float* target, float* loss, int64_t n);
// dpred = scale * 2 * (pred - target) / n   (overwrite)
void mseBackward(const float* pred, const float* target, float* dpred, int64_t n, float scale);

// ---- LSTM cell (kernels.cpp) ------------------------------------------------------------
// One time step of an LSTM for `rows` sequences of `hidden` units. gates [rows, 4 hidden] holds
// the pre-activations in column blocks i | f | g | o (input, forget, cell, output) and is
// overwritten with their activations sigmoid(i), sigmoid(f), tanh(g), sigmoid(o), which the
// backward reads. c = f * cPrev + i * g, h = o * tanh(c) (element-wise, [rows, hidden]).
// c and h alias neither cPrev, gates nor each other.
void lstmCellForward(float* gates, const float* cPrev, float* c, float* h, int64_t rows,
                     int64_t hidden);
// From the forward's activations (gates) and c: with
//   dcTotal = dc + dh * o * (1 - tanh(c)^2)   (dc null: 0),
// dgates = [dcTotal g i(1-i) | dcTotal cPrev f(1-f) | dcTotal i (1-g^2) | dh tanh(c) o(1-o)],
// the gradients w.r.t. the pre-activations, and dcPrev = dcTotal * f (both overwrite).
// dcPrev may be dc (the carried cell gradient updated in place); nothing else aliases.
void lstmCellBackward(const float* gates, const float* cPrev, const float* c, const float* dh,
                      const float* dc, float* dgates, float* dcPrev, int64_t rows,
                      int64_t hidden);

// ---- shape ops (kernels.cpp) ------------------------------------------------------------
// out [rows, classes] = onehot(labels); returns false if a label is out of range.
bool oneHot(const int32_t* labels, float* out, int64_t rows, int64_t classes);
// out [rows, colsA + colsB] = [a | b]
void concatColumns(const float* a, const float* b, float* out, int64_t rows, int64_t colsA,
                   int64_t colsB);
// da = dout[:, :colsA], db = dout[:, colsA:]  (overwrite; either may be null to skip)
void splitColumns(const float* dout, float* da, float* db, int64_t rows, int64_t colsA,
                  int64_t colsB);

// ---- optimizers (kernels.cpp), one call per parameter tensor -----------------------------
// PyTorch semantics. g' = grad + weightDecay * param.
// SGD: v = momentum * v + g'; param -= lr * v   (momentum == 0: param -= lr * g', v unused)
void sgdStep(float* param, const float* grad, float* velocity, int64_t n, float lr,
             float momentum, float weightDecay);
// Adam: m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
//       param -= lr * (m / (1 - b1^step)) / (sqrt(v / (1 - b2^step)) + eps);  step >= 1
void adamStep(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
              float beta1, float beta2, float eps, float weightDecay, int64_t step);
// adamStep with the scalars given (adamScalars of core/op_types.h, or read from a device tensor).
void adamStepScaled(float* param, const float* grad, float* m, float* v, int64_t n,
                    AdamScalars scalars, float beta1, float beta2, float eps, float weightDecay);

}  // namespace sg::cpu
