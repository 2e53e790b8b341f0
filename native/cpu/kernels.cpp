// The entry points of kernels.h: each forwards to the same kernel compiled for the ISA that
// sgemm runs with (kernels_isa.h). One choice for the whole backend: CPUID picks the fastest
// path, SYNTHGRAD_SGEMM_ISA (or gemm_detail::selectSgemmIsa) forces one for GEMM and these
// kernels alike, and all paths give bit-identical results (kernels_body.inc).
#include <cstring>

#include "kernels_isa.h"

namespace sg::cpu {
namespace {

enum class KernelIsa { Generic, Avx2, Avx512 };

// sgemm's path, read at every call (a test may switch it); a path name this file does not
// know runs the generic kernels.
KernelIsa activeIsa() {
  const char* isa = sgemmIsa();
  if (std::strncmp(isa, "avx512", 6) == 0) return KernelIsa::Avx512;
  if (std::strncmp(isa, "avx2", 4) == 0) return KernelIsa::Avx2;
  return KernelIsa::Generic;
}

}  // namespace

#define SG_FORWARD(call)                                              \
  switch (activeIsa()) {                                              \
    case KernelIsa::Avx512: return kernels_avx512::call;              \
    case KernelIsa::Avx2: return kernels_avx2::call;                  \
    default: return kernels_generic::call;                            \
  }

const char* kernelsIsa() { SG_FORWARD(compiledIsa()) }

void fill(float* y, int64_t n, float value) { SG_FORWARD(fill(y, n, value)) }

void fillInt(int32_t* y, int64_t n, int32_t value) { SG_FORWARD(fillInt(y, n, value)) }

void axpby(int64_t n, float a, const float* x, float b, float* y) {
  SG_FORWARD(axpby(n, a, x, b, y))
}

void addBias(float* y, const float* bias, int64_t rows, int64_t cols) {
  SG_FORWARD(addBias(y, bias, rows, cols))
}

void biasBackward(const float* dy, float* dbias, int64_t rows, int64_t cols) {
  SG_FORWARD(biasBackward(dy, dbias, rows, cols))
}

void activationForward(Activation act, const float* x, float* y, int64_t n) {
  SG_FORWARD(activationForward(act, x, y, n))
}

void activationBackward(Activation act, const float* y, const float* dy, float* dx, int64_t n) {
  SG_FORWARD(activationBackward(act, y, dy, dx, n))
}

void batchNormForward(const float* x, const float* gamma, const float* beta, float* y,
                      float* runningMean, float* runningVar, float* saveMean, float* saveInvStd,
                      int64_t rows, int64_t cols, float momentum, float eps, bool training,
                      bool relu) {
  SG_FORWARD(batchNormForward(x, gamma, beta, y, runningMean, runningVar, saveMean, saveInvStd,
                              rows, cols, momentum, eps, training, relu))
}

void batchNormBackward(const float* x, const float* dy, const float* gamma,
                       const float* saveMean, const float* saveInvStd, float* dx,
                       float* dgamma, float* dbeta, int64_t rows, int64_t cols,
                       const float* reluOutput) {
  SG_FORWARD(batchNormBackward(x, dy, gamma, saveMean, saveInvStd, dx, dgamma, dbeta, rows, cols,
                               reluOutput))
}

bool softmaxCrossEntropyForward(const float* logits, const int32_t* labels, float* probs,
                                float* loss, int64_t rows, int64_t classes) {
  SG_FORWARD(softmaxCrossEntropyForward(logits, labels, probs, loss, rows, classes))
}

void softmaxCrossEntropyBackward(const float* probs, const int32_t* labels, float* dlogits,
                                 int64_t rows, int64_t classes, float scale) {
  SG_FORWARD(softmaxCrossEntropyBackward(probs, labels, dlogits, rows, classes, scale))
}

void sigmoidCrossEntropyForward(const float* logits, const float* targets, float* probs,
                                float* loss, int64_t rows, int64_t cols) {
  SG_FORWARD(sigmoidCrossEntropyForward(logits, targets, probs, loss, rows, cols))
}

void sigmoidCrossEntropyBackward(const float* probs, const float* targets, float* dlogits,
                                 int64_t n, float scale) {
  SG_FORWARD(sigmoidCrossEntropyBackward(probs, targets, dlogits, n, scale))
}

void mseForward(const float* pred, const float* target, float* loss, int64_t n) {
  SG_FORWARD(mseForward(pred, target, loss, n))
}

void mseBackward(const float* pred, const float* target, float* dpred, int64_t n, float scale) {
  SG_FORWARD(mseBackward(pred, target, dpred, n, scale))
}

void lstmCellForward(float* gates, const float* cPrev, float* c, float* h, int64_t rows,
                     int64_t hidden) {
  SG_FORWARD(lstmCellForward(gates, cPrev, c, h, rows, hidden))
}

void lstmCellBackward(const float* gates, const float* cPrev, const float* c, const float* dh,
                      const float* dc, float* dgates, float* dcPrev, int64_t rows,
                      int64_t hidden) {
  SG_FORWARD(lstmCellBackward(gates, cPrev, c, dh, dc, dgates, dcPrev, rows, hidden))
}

bool oneHot(const int32_t* labels, float* out, int64_t rows, int64_t classes) {
  SG_FORWARD(oneHot(labels, out, rows, classes))
}

void concatColumns(const float* a, const float* b, float* out, int64_t rows, int64_t colsA,
                   int64_t colsB) {
  SG_FORWARD(concatColumns(a, b, out, rows, colsA, colsB))
}

void splitColumns(const float* dout, float* da, float* db, int64_t rows, int64_t colsA,
                  int64_t colsB) {
  SG_FORWARD(splitColumns(dout, da, db, rows, colsA, colsB))
}

void sgdStep(float* param, const float* grad, float* velocity, int64_t n, float lr,
             float momentum, float weightDecay) {
  SG_FORWARD(sgdStep(param, grad, velocity, n, lr, momentum, weightDecay))
}

void adamStep(float* param, const float* grad, float* m, float* v, int64_t n, float lr,
              float beta1, float beta2, float eps, float weightDecay, int64_t step) {
  SG_FORWARD(adamStep(param, grad, m, v, n, lr, beta1, beta2, eps, weightDecay, step))
}

void adamStepScaled(float* param, const float* grad, float* m, float* v, int64_t n,
                    AdamScalars scalars, float beta1, float beta2, float eps, float weightDecay) {
  SG_FORWARD(adamStepScaled(param, grad, m, v, n, scalars, beta1, beta2, eps, weightDecay))
}

void sgdStepGroup(const GroupTensor* tensors, int64_t count, float lr, float momentum,
                  float weightDecay) {
  SG_FORWARD(sgdStepGroup(tensors, count, lr, momentum, weightDecay))
}

void adamStepGroup(const GroupTensor* tensors, int64_t count, AdamScalars scalars, float beta1,
                   float beta2, float eps, float weightDecay) {
  SG_FORWARD(adamStepGroup(tensors, count, scalars, beta1, beta2, eps, weightDecay))
}

#undef SG_FORWARD

}  // namespace sg::cpu
