// The LSTM cell: one time step forward (gate activations in place, new cell state and output)
// and its backward (gradients w.r.t. the gate pre-activations and the previous cell state);
// activation gradients overwrite (=), as everywhere.
//
// Element-wise over [rows, hidden]: thread (r, j) owns unit j of row r, i.e. the four gate
// columns j, H + j, 2H + j, 3H + j of gates and element j of cPrev, c, h (and of dh, dc,
// dcPrev, the four of dgates). Grid-stride loops with 64-bit indices. The arithmetic mirrors
// the CPU kernels (native/cpu/kernels.cpp) operation by operation with __fmul_rn, __fadd_rn
// and __fsub_rn, so the only differences from the CPU are those of tanhf/expf (a few ulp).
// ops.cpp guarantees that no output shares memory with an input, except dcPrev with dc (read
// before written by the same thread), so only those two go without __restrict__.
#include "check.cuh"
#include "common.cuh"
#include "kernels.cuh"

namespace sg::cuda {
namespace {

// ============================================================================================
// kernels
// ============================================================================================

constexpr int kSigmoid = static_cast<int>(Activation::Sigmoid);
constexpr int kTanh = static_cast<int>(Activation::Tanh);

__global__ void lstmCellForwardKernel(float* __restrict__ gates, const float* __restrict__ cPrev,
                                      float* __restrict__ c, float* __restrict__ h, int64_t rows,
                                      int64_t hidden) {
  const int64_t H = hidden, n = rows * hidden;
  for (int64_t e = firstIndex(); e < n; e += gridStep()) {
    const int64_t r = e / H, j = e - r * H;
    float* a = gates + r * 4 * H + j;
    const float i = activate(kSigmoid, a[0]);
    const float f = activate(kSigmoid, a[H]);
    const float g = activate(kTanh, a[2 * H]);
    const float o = activate(kSigmoid, a[3 * H]);
    a[0] = i;
    a[H] = f;
    a[2 * H] = g;
    a[3 * H] = o;
    const float cv = __fadd_rn(__fmul_rn(f, cPrev[e]), __fmul_rn(i, g));
    c[e] = cv;
    h[e] = __fmul_rn(o, tanhf(cv));
  }
}

// dc may be null (no gradient into c from later steps); dcPrev may be dc.
__global__ void lstmCellBackwardKernel(const float* __restrict__ gates,
                                       const float* __restrict__ cPrev,
                                       const float* __restrict__ c, const float* __restrict__ dh,
                                       const float* dc, float* __restrict__ dgates, float* dcPrev,
                                       int64_t rows, int64_t hidden) {
  const int64_t H = hidden, n = rows * hidden;
  for (int64_t e = firstIndex(); e < n; e += gridStep()) {
    const int64_t r = e / H, j = e - r * H;
    const float* a = gates + r * 4 * H + j;
    const float i = a[0], f = a[H], g = a[2 * H], o = a[3 * H];
    const float tc = tanhf(c[e]);
    const float dhv = dh[e];
    // 1 - t^2 as (1 - t)(1 + t): no cancellation near |t| = 1.
    const float viaH =
        __fmul_rn(__fmul_rn(dhv, o), __fmul_rn(__fsub_rn(1.0f, tc), __fadd_rn(1.0f, tc)));
    const float dct = dc ? __fadd_rn(dc[e], viaH) : viaH;
    float* d = dgates + r * 4 * H + j;
    d[0] = __fmul_rn(__fmul_rn(dct, g), __fmul_rn(i, __fsub_rn(1.0f, i)));
    d[H] = __fmul_rn(__fmul_rn(dct, cPrev[e]), __fmul_rn(f, __fsub_rn(1.0f, f)));
    d[2 * H] = __fmul_rn(__fmul_rn(dct, i), __fmul_rn(__fsub_rn(1.0f, g), __fadd_rn(1.0f, g)));
    d[3 * H] = __fmul_rn(__fmul_rn(dhv, tc), __fmul_rn(o, __fsub_rn(1.0f, o)));
    dcPrev[e] = __fmul_rn(dct, f);
  }
}

}  // namespace

// ============================================================================================
// launchers
// ============================================================================================

void launchLstmCellForward(cudaStream_t stream, float* gates, const float* cPrev, float* c,
                           float* h, int64_t rows, int64_t hidden) {
  const int64_t n = rows * hidden;
  if (n <= 0) return;
  SG_LAUNCH(gridFor(n), kBlock, 0, stream, lstmCellForwardKernel)(gates, cPrev, c, h, rows,
      hidden);
  CUDA_CHECK_LAUNCH();
}

void launchLstmCellBackward(cudaStream_t stream, const float* gates, const float* cPrev,
                            const float* c, const float* dh, const float* dc, float* dgates,
                            float* dcPrev, int64_t rows, int64_t hidden) {
  const int64_t n = rows * hidden;
  if (n <= 0) return;
  SG_LAUNCH(gridFor(n), kBlock, 0, stream, lstmCellBackwardKernel)(gates, cPrev, c, dh, dc,
      dgates, dcPrev, rows, hidden);
  CUDA_CHECK_LAUNCH();
}

}  // namespace sg::cuda
