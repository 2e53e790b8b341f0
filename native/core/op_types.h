// Types that the op interface and every backend share: the activation kinds, the label of a
// row without a target, and Adam's step-dependent scalars. They live in core so that neither backend includes the other's
// headers to agree on them.
#pragma once
#include <cmath>
#include <cstdint>

namespace sg {

// The codes are part of the kernels' interface (the CUDA GEMM epilogue takes the int).
enum class Activation { Relu = 0, Tanh = 1, Sigmoid = 2 };

// The label of a row that has no target (sequence tasks score only some steps): the softmax
// cross-entropy gives it no loss and a zero gradient. oneHot still rejects it.
constexpr int32_t kIgnoredLabel = -1;

// The step-dependent scalars of Adam, computed in double and rounded once, so that every
// backend, and the hyper tensor of adamStepGroup, uses the same float32 values:
// stepSize = lr / (1 - beta1^step), bc2Sqrt = sqrt(1 - beta2^step); step >= 1.
struct AdamScalars {
  float stepSize, bc2Sqrt;
};

inline AdamScalars adamScalars(float lr, float beta1, float beta2, int64_t step) {
  const double t = static_cast<double>(step < 1 ? 1 : step);
  return {static_cast<float>(static_cast<double>(lr) /
                             (1.0 - std::pow(static_cast<double>(beta1), t))),
          static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(beta2), t)))};
}

}  // namespace sg
