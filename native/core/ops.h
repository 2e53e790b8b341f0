// The op front end: checks every argument (dtype, device, shape, aliasing rules) and then
// enqueues the op on the stream's backend. A bad argument throws an ArgumentError that names
// the op, the argument and what was expected; nothing is enqueued then.
#pragma once
#include "backend.h"

namespace sg::ops {

void copy(Stream& s, const Tensor& src, const Tensor& dst);
void fill(Stream& s, const Tensor& y, double value);
// y = a * x + b * y
void axpby(Stream& s, float a, const Tensor& x, float b, const Tensor& y);
// c = alpha * op(a) * op(b) + beta * c, all 2-D float32
void gemm(Stream& s, const Tensor& a, const Tensor& b, const Tensor& c, bool transA, bool transB,
          float alpha, float beta);
// y[B,out] = act(x[B,in] w[out,in]ᵀ + bias[out]); bias may be empty, act absent for none.
void linearForward(Stream& s, const Tensor& x, const Tensor& w, const Tensor& bias,
                   const Tensor& y, std::optional<Activation> act);
void addBias(Stream& s, const Tensor& y, const Tensor& bias);
void biasBackward(Stream& s, const Tensor& dy, const Tensor& dbias);
void activationForward(Stream& s, Activation act, const Tensor& x, const Tensor& y);
void activationBackward(Stream& s, Activation act, const Tensor& y, const Tensor& dy,
                        const Tensor& dx);
void batchNormForward(Stream& s, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                      const Tensor& y, const Tensor& runningMean, const Tensor& runningVar,
                      const Tensor& saveMean, const Tensor& saveInvStd, float momentum,
                      float eps, bool training);
void batchNormBackward(Stream& s, const Tensor& x, const Tensor& dy, const Tensor& gamma,
                       const Tensor& saveMean, const Tensor& saveInvStd, const Tensor& dx,
                       const Tensor& dgamma, const Tensor& dbeta);
// labels int32 [B] in [0, classes), or -1: no target at that row (no loss, zero gradient);
// loss = the sum over scored rows / B. Other labels fail the stream (checked on the device).
void softmaxCrossEntropyForward(Stream& s, const Tensor& logits, const Tensor& labels,
                                const Tensor& probs, const Tensor& loss);
void softmaxCrossEntropyBackward(Stream& s, const Tensor& probs, const Tensor& labels,
                                 const Tensor& dlogits, float scale);
// probs = sigmoid(logits) [B, K]; loss [1] = (1/B) sum of the binary cross-entropies against
// float32 targets [B, K] (meant to be in [0, 1]; not checked), computed from the logits.
void sigmoidCrossEntropyForward(Stream& s, const Tensor& logits, const Tensor& targets,
                                const Tensor& probs, const Tensor& loss);
// dlogits = scale * (probs - targets) (no 1/B: pass scale = 1/B for the loss's gradient)
void sigmoidCrossEntropyBackward(Stream& s, const Tensor& probs, const Tensor& targets,
                                 const Tensor& dlogits, float scale);
// One LSTM step: gates [B, 4H] (pre-activations i | f | g | o, overwritten with their
// activations), cPrev [B, H]; writes c = f cPrev + i g and h = o tanh(c) [B, H].
void lstmCellForward(Stream& s, const Tensor& gates, const Tensor& cPrev, const Tensor& c,
                     const Tensor& h);
// Its backward from the forward's gates (activations), cPrev and c: dgates [B, 4H] (w.r.t. the
// pre-activations) and dcPrev [B, H], both overwritten; dc may be empty (no gradient into c
// from later steps). dcPrev may be dc; no other output shares memory with any tensor.
void lstmCellBackward(Stream& s, const Tensor& gates, const Tensor& cPrev, const Tensor& c,
                      const Tensor& dh, const Tensor& dc, const Tensor& dgates,
                      const Tensor& dcPrev);
void mseForward(Stream& s, const Tensor& pred, const Tensor& target, const Tensor& loss);
void mseBackward(Stream& s, const Tensor& pred, const Tensor& target, const Tensor& dpred,
                 float scale);
void oneHot(Stream& s, const Tensor& labels, const Tensor& out);
void concatColumns(Stream& s, const Tensor& a, const Tensor& b, const Tensor& out);
void splitColumns(Stream& s, const Tensor& dout, const Tensor& da, const Tensor& db);
void sgdStep(Stream& s, const Tensor& param, const Tensor& grad, const Tensor& velocity, float lr,
             float momentum, float weightDecay);
void adamStep(Stream& s, const Tensor& param, const Tensor& grad, const Tensor& m,
              const Tensor& v, float lr, float beta1, float beta2, float eps, float weightDecay,
              int64_t step);
// y[i] = values[i]; y float32 with exactly values.size() (1..16) elements.
void writeScalars(Stream& s, const Tensor& y, const std::vector<float>& values);
// One optimizer step over a parameter group, gradients zeroed; see Backend::sgdStepGroup.
void sgdStepGroup(Stream& s, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                  const std::vector<Tensor>& velocities, const Tensor& hyper, float momentum,
                  float weightDecay);
void adamStepGroup(Stream& s, const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                   const std::vector<Tensor>& ms, const std::vector<Tensor>& vs,
                   const Tensor& hyper, float beta1, float beta2, float eps, float weightDecay);

}  // namespace sg::ops
