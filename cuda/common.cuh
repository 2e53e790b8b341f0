// Device-side helpers shared by the kernel files: launch shapes for element-wise loops and
// the deterministic per-column block reduction used by biasBackward and BatchNorm.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace sg::cuda {

// ---- element-wise loops --------------------------------------------------------------------

constexpr int kBlock = 256;            // threads per block of the element-wise kernels
constexpr int64_t kMaxBlocks = 65536;  // grid-stride loops cover the rest

// Blocks for a grid-stride loop over n > 0 items.
inline unsigned gridFor(int64_t n, int block = kBlock) {
  return static_cast<unsigned>(std::min<int64_t>((n + block - 1) / block, kMaxBlocks));
}

// for (int64_t i : gridStride(n)) style loop, written out by the kernels as
//   for (int64_t i = firstIndex(); i < n; i += gridStep()) ...
__device__ __forceinline__ int64_t firstIndex() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t gridStep() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// ---- activations ---------------------------------------------------------------------------

// The forward activations as the CPU computes them (codes of sg::Activation; kNoActivation
// for none). Used by activationForward and by the GEMM epilogue.
constexpr int kNoActivation = -1;
__device__ __forceinline__ float activate(int act, float v) {
  if (act == 0) return v < 0.0f ? 0.0f : v;  // ReLU, keeps NaN
  if (act == 1) return tanhf(v);
  if (act == 2) {  // sigmoid = 1 / (1 + e) for v >= 0, e / (1 + e) for v < 0, e = exp(-|v|)
    const float t = -fabsf(v);
    const float e = t < -87.0f ? 0.0f : expf(t);  // as the CPU: 0 below -87, NaN stays
    return __fdiv_rn(v >= 0.0f ? 1.0f : e, __fadd_rn(1.0f, e));
  }
  return v;
}

// What the GEMM does to each output after alpha * acc (+ beta * C): + bias[column] (when not
// null), then the activation. Linear layers' forward pass in one kernel.
struct Epilogue {
  const float* bias = nullptr;
  int activation = kNoActivation;
};

// ---- parameter groups (optimizer.cu) ---------------------------------------------------------
//
// One launch updates up to kGroupTensors non-empty tensors: each tensor is cut into chunks of
// kGroupChunk elements and every block (kBlock threads, 4 elements each) takes one chunk;
// firstBlock[t] is tensor t's first block. Chunks of 1024 rather than larger ones so that the
// few-hundred-thousand-parameter layers of this project give hundreds of blocks (a 256x256
// weight: 64 blocks; 784x256: 196), enough to cover the 132 SMs of an H100/H200.
// Passed by value as a kernel argument (about 1.4 KB, under the 4 KB limit).

constexpr int kGroupTensors = 32;
constexpr int64_t kGroupChunk = 4 * kBlock;

struct GroupArgs {
  float* param[kGroupTensors];
  float* grad[kGroupTensors];
  float* state0[kGroupTensors];  // SGD velocity (may be null) / Adam m
  float* state1[kGroupTensors];  // Adam v
  int64_t n[kGroupTensors];
  int firstBlock[kGroupTensors + 1];
  int count;
  unsigned aligned;  // bit t: tensor t's buffers are 16-byte aligned (float4 access)
};

// A handful of host values for a stream-ordered write (writeScalars).
struct ScalarArgs {
  float v[16];
  int n;
};

// ---- column reductions over [rows, cols] -----------------------------------------------------
//
// A block of kColTile x kRowLanes threads owns kColTile consecutive columns: threadIdx.x is
// the column in the tile, threadIdx.y the row lane. Lane y visits rows y, y + kRowLanes, ...
// in order (a warp reads 32 consecutive floats of a row: coalesced), accumulating in double;
// columnSum then adds the lanes' partials in lane order. The result depends only on the
// shape, never on timing: no atomics.

constexpr int kColTile = 32;
constexpr int kRowLanes = 16;

// Scratch of columnSumOf for a COLS x LANES block.
template <int COLS, int LANES>
using ColumnScratchOf = double[LANES][COLS + 1];
using ColumnScratch = ColumnScratchOf<kColTile, kRowLanes>;

// Sum of `v` over the row lanes of this thread's column, returned to every thread of the
// column, for a block of COLS x LANES threads. Every thread of the block must call it (it
// synchronises).
template <int COLS, int LANES>
__device__ __forceinline__ double columnSumOf(double v, ColumnScratchOf<COLS, LANES>& red) {
  const int x = threadIdx.x, y = threadIdx.y;
  red[y][x] = v;
  __syncthreads();
  if (y == 0) {
    double s = 0.0;
#pragma unroll 8
    for (int i = 0; i < LANES; ++i) s += red[i][x];
    red[0][x] = s;
  }
  __syncthreads();
  const double total = red[0][x];
  __syncthreads();  // red may be reused by the next call
  return total;
}

// columnSumOf for the kColTile x kRowLanes blocks of biasBackward.
__device__ __forceinline__ double columnSum(double v, ColumnScratch& red) {
  return columnSumOf<kColTile, kRowLanes>(v, red);
}

}  // namespace sg::cuda
