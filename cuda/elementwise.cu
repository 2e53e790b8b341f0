// Element-wise and broadcast kernels: fill, axpby, bias add and its backward, activations,
// label check, one-hot, column concat/split.
//
// Element-wise kernels are grid-stride loops with 64-bit indices. __restrict__ is used only
// where ops.cpp guarantees that the buffers do not overlap. Arithmetic mirrors the
// CPU kernels operation by operation, with __fmul_rn/__fadd_rn/__fsub_rn where the compiler
// could otherwise contract a*b+c into an FMA (the CPU build does not): results then match
// the CPU bit for bit except where a libm function differs (tanhf, expf: a few ulp).
// biasBackward is a column reduction (see common.cuh): double accumulation, fixed order.
#include <stdexcept>

#include "check.cuh"
#include "common.cuh"
#include "kernels.cuh"

namespace sg::cuda {
namespace {

// ============================================================================================
// kernels
// ============================================================================================
// (The host emulation, test/cuda/host_emulation/run.sh, runs the text between this banner
// line "// kernels" and the "// launchers" one on the CPU: keep both lines exactly as they are.)

template <class T>
__global__ void fillKernel(T* __restrict__ y, int64_t n, T value) {
  for (int64_t i = firstIndex(); i < n; i += gridStep()) y[i] = value;
}

// y = a x + b y; with useY false, y = a x (y's old contents, NaN included, are ignored).
// x may alias y (same index read then written).
__global__ void axpbyKernel(int64_t n, float a, const float* x, float b, float* y, bool useY) {
  for (int64_t i = firstIndex(); i < n; i += gridStep()) {
    const float ax = __fmul_rn(a, x[i]);
    y[i] = useY ? __fadd_rn(ax, __fmul_rn(b, y[i])) : ax;
  }
}

__global__ void addBiasKernel(float* y, const float* bias, int64_t n, int64_t cols) {
  for (int64_t i = firstIndex(); i < n; i += gridStep()) y[i] = __fadd_rn(y[i], bias[i % cols]);
}

// Block (kColTile, kRowLanes) per tile of kColTile columns.
__global__ void biasBackwardKernel(const float* dy, float* dbias, int64_t rows, int64_t cols) {
  __shared__ ColumnScratch red;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColTile + threadIdx.x;
  const bool ok = c < cols;
  double s = 0.0;
  if (ok)
    for (int64_t r = threadIdx.y; r < rows; r += kRowLanes) s += dy[r * cols + c];
  const double total = columnSum(s, red);
  if (ok && threadIdx.y == 0) dbias[c] = __fadd_rn(dbias[c], static_cast<float>(total));
}

// act(x); x may alias y.
template <Activation A>
__global__ void activationForwardKernel(const float* x, float* y, int64_t n) {
  for (int64_t i = firstIndex(); i < n; i += gridStep()) {
    const float out = activate(static_cast<int>(A), x[i]);
    y[i] = out;
  }
}

// dx = dy * act'(.) from the forward output y; dx may alias dy.
template <Activation A>
__global__ void activationBackwardKernel(const float* y, const float* dy, float* dx, int64_t n) {
  for (int64_t i = firstIndex(); i < n; i += gridStep()) {
    const float yv = y[i], g = dy[i];
    float out;
    if (A == Activation::Relu) {
      out = yv > 0.0f ? g : 0.0f;
    } else if (A == Activation::Tanh) {  // 1 - y^2 = (1 - y)(1 + y): no cancellation at |y| ~ 1
      out = __fmul_rn(g, __fmul_rn(__fsub_rn(1.0f, yv), __fadd_rn(1.0f, yv)));
    } else {  // y (1 - y)
      out = __fmul_rn(g, __fmul_rn(yv, __fsub_rn(1.0f, yv)));
    }
    dx[i] = out;
  }
}

// One block: *flag = any label outside [lowest, classes).
__global__ void labelCheckKernel(const int32_t* __restrict__ labels, int64_t rows,
                                 int64_t classes, int64_t lowest, int* __restrict__ flag) {
  int bad = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    const int64_t l = labels[r];
    bad |= (l < lowest || l >= classes) ? 1 : 0;
  }
  const int any = __syncthreads_or(bad);
  if (threadIdx.x == 0) *flag = any ? 1 : 0;
}

__global__ void oneHotKernel(const int32_t* __restrict__ labels, float* __restrict__ out,
                             int64_t rows, int64_t classes, const int* __restrict__ flag) {
  if (*flag) return;  // bad labels: write nothing (as the CPU kernel)
  const int64_t n = rows * classes;
  for (int64_t i = firstIndex(); i < n; i += gridStep()) {
    const int64_t r = i / classes, c = i - r * classes;
    out[i] = labels[r] == c ? 1.0f : 0.0f;
  }
}

__global__ void concatColumnsKernel(const float* __restrict__ a, const float* __restrict__ b,
                                    float* __restrict__ out, int64_t rows, int64_t colsA,
                                    int64_t colsB) {
  const int64_t cols = colsA + colsB, n = rows * cols;
  for (int64_t i = firstIndex(); i < n; i += gridStep()) {
    const int64_t r = i / cols, c = i - r * cols;
    out[i] = c < colsA ? a[r * colsA + c] : b[r * colsB + (c - colsA)];
  }
}

__global__ void splitColumnsKernel(const float* __restrict__ dout, float* da, float* db,
                                   int64_t rows, int64_t colsA, int64_t colsB) {
  const int64_t cols = colsA + colsB, n = rows * cols;
  for (int64_t i = firstIndex(); i < n; i += gridStep()) {
    const int64_t r = i / cols, c = i - r * cols;
    if (c < colsA) {
      if (da) da[r * colsA + c] = dout[i];
    } else {
      if (db) db[r * colsB + (c - colsA)] = dout[i];
    }
  }
}

}  // namespace

// ============================================================================================
// launchers
// ============================================================================================

void launchFill(cudaStream_t stream, float* y, int64_t n, float value) {
  if (n <= 0) return;
  SG_LAUNCH(gridFor(n), kBlock, 0, stream, fillKernel<float>)(y, n, value);
  CUDA_CHECK_LAUNCH();
}

void launchFillInt(cudaStream_t stream, int32_t* y, int64_t n, int32_t value) {
  if (n <= 0) return;
  SG_LAUNCH(gridFor(n), kBlock, 0, stream, fillKernel<int32_t>)(y, n, value);
  CUDA_CHECK_LAUNCH();
}

void launchAxpby(cudaStream_t stream, int64_t n, float a, const float* x, float b, float* y) {
  if (n <= 0) return;
  SG_LAUNCH(gridFor(n), kBlock, 0, stream, axpbyKernel)(n, a, x, b, y, b != 0.0f);
  CUDA_CHECK_LAUNCH();
}

void launchAddBias(cudaStream_t stream, float* y, const float* bias, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t n = rows * cols;
  SG_LAUNCH(gridFor(n), kBlock, 0, stream, addBiasKernel)(y, bias, n, cols);
  CUDA_CHECK_LAUNCH();
}

void launchBiasBackward(cudaStream_t stream, const float* dy, float* dbias, int64_t rows,
                        int64_t cols) {
  // rows == 0 adds nothing (the CPU adds a sum of 0).
  if (rows <= 0 || cols <= 0) return;
  const int64_t tiles = (cols + kColTile - 1) / kColTile;
  SG_LAUNCH(static_cast<unsigned>(tiles), dim3(kColTile, kRowLanes), 0, stream, biasBackwardKernel)(
       dy, dbias, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void launchActivationForward(cudaStream_t stream, Activation act, const float* x, float* y,
                             int64_t n) {
  if (n <= 0) return;
  switch (act) {
    case Activation::Relu:
      SG_LAUNCH(gridFor(n), kBlock, 0, stream, activationForwardKernel<Activation::Relu>)(x, y, n);
      break;
    case Activation::Tanh:
      SG_LAUNCH(gridFor(n), kBlock, 0, stream, activationForwardKernel<Activation::Tanh>)(x, y, n);
      break;
    case Activation::Sigmoid:
      SG_LAUNCH(gridFor(n), kBlock, 0, stream, activationForwardKernel<Activation::Sigmoid>)(x, y,
          n);
      break;
    default:
      throw std::runtime_error("activationForward: unknown activation");
  }
  CUDA_CHECK_LAUNCH();
}

void launchActivationBackward(cudaStream_t stream, Activation act, const float* y,
                              const float* dy, float* dx, int64_t n) {
  if (n <= 0) return;
  switch (act) {
    case Activation::Relu:
      SG_LAUNCH(gridFor(n), kBlock, 0, stream, activationBackwardKernel<Activation::Relu>)(y, dy,
          dx, n);
      break;
    case Activation::Tanh:
      SG_LAUNCH(gridFor(n), kBlock, 0, stream, activationBackwardKernel<Activation::Tanh>)(y, dy,
          dx, n);
      break;
    case Activation::Sigmoid:
      SG_LAUNCH(gridFor(n), kBlock, 0, stream, activationBackwardKernel<Activation::Sigmoid>)(y, dy,
          dx, n);
      break;
    default:
      throw std::runtime_error("activationBackward: unknown activation");
  }
  CUDA_CHECK_LAUNCH();
}

void launchLabelCheck(cudaStream_t stream, const int32_t* labels, int64_t rows, int64_t classes,
                      bool allowIgnored, int* flag) {
  // Always launched (rows may be 0): the flag must be written for the kernels that read it.
  const int64_t lowest = allowIgnored ? kIgnoredLabel : 0;
  SG_LAUNCH(1, 1024, 0, stream, labelCheckKernel)(labels, rows < 0 ? 0 : rows, classes, lowest,
      flag);
  CUDA_CHECK_LAUNCH();
}

void launchOneHot(cudaStream_t stream, const int32_t* labels, float* out, int64_t rows,
                  int64_t classes, const int* flag) {
  if (rows <= 0 || classes <= 0) return;
  const int64_t n = rows * classes;
  SG_LAUNCH(gridFor(n), kBlock, 0, stream, oneHotKernel)(labels, out, rows, classes, flag);
  CUDA_CHECK_LAUNCH();
}

void launchConcatColumns(cudaStream_t stream, const float* a, const float* b, float* out,
                         int64_t rows, int64_t colsA, int64_t colsB) {
  const int64_t n = rows * (colsA + colsB);
  if (n <= 0) return;
  SG_LAUNCH(gridFor(n), kBlock, 0, stream, concatColumnsKernel)(a, b, out, rows, colsA, colsB);
  CUDA_CHECK_LAUNCH();
}

void launchSplitColumns(cudaStream_t stream, const float* dout, float* da, float* db,
                        int64_t rows, int64_t colsA, int64_t colsB) {
  const int64_t n = rows * (colsA + colsB);
  if (n <= 0 || (!da && !db)) return;
  SG_LAUNCH(gridFor(n), kBlock, 0, stream, splitColumnsKernel)(dout, da, db, rows, colsA, colsB);
  CUDA_CHECK_LAUNCH();
}

}  // namespace sg::cuda
