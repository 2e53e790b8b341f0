// Float64 reference implementations of synthgrad's ops (see native/cpu/kernels.h), plus the
// numeric tools the op tests use: central finite differences, the worst-relative-error
// comparison (./compare.ts, shared with gpu:check) and seeded non-zero random data.
//
// Every function takes plain arrays or typed arrays (a Float32Array read back from a tensor
// converts to float64 exactly) and returns a Float64Array. Matrices are row-major.
import { Random } from '../../ts/random';
import { CompareReport, compare as compareValues, describeReport } from './compare';

export type Vec = ArrayLike<number>;

// ---- data --------------------------------------------------------------------------------

/**
 * n float32 values with a random sign and magnitude uniform in [lo, hi) (default [0.1, 1)):
 * never zero, so a kernel that forgets a term or writes zeros cannot pass by accident.
 */
export function randomArray(rng: Random, n: number, lo = 0.1, hi = 1): Float32Array {
  if (!(lo > 0)) throw new Error('randomArray: lo must be > 0 (values must be non-zero)');
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const mag = rng.uniform(lo, hi);
    out[i] = rng.next() < 0.5 ? -mag : mag;
  }
  return out;
}

/** n values in [lo, hi) (any sign; for quantities that must be positive, e.g. variances). */
export function uniformArray(rng: Random, n: number, lo: number, hi: number): Float32Array {
  return rng.uniformArray(n, lo, hi);
}

/** n integer labels in [0, classes), every class used when n >= classes. */
export function randomLabels(rng: Random, n: number, classes: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = i < classes ? i : rng.int(classes);
  return rng.shuffle(out);
}

/** The float32 rounding of every element (the values a tensor would hold). */
export function toF32(a: Vec): Float32Array {
  return Float32Array.from(a as ArrayLike<number>);
}

export function f64(a: Vec): Float64Array {
  return Float64Array.from(a as ArrayLike<number>);
}

// ---- comparison --------------------------------------------------------------------------

export type { CompareReport } from './compare';
export { describeReport } from './compare';

/**
 * Worst relative error of `got` against the reference `want` (./compare.ts, the comparison
 * gpu:check uses too) with the tests' usual options: |a - b| / max(|b|, floor), where floor (a
 * number, or one per element) keeps near-zero reference values from turning a tiny absolute
 * error into a huge relative one; a NaN/inf in `got` fails unless `want` holds the same one.
 */
export function compare(got: Vec, want: Vec, floor: number | Vec = 1e-6): CompareReport {
  return compareValues(got, want, { floor, nonFinite: 'equal-passes' });
}

export function maxAbs(a: Vec): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

// ---- finite differences ------------------------------------------------------------------

/**
 * Central finite-difference gradient of the scalar f at x: (f(x + h e_i) - f(x - h e_i)) / 2h.
 * Error O(h^2 f''') + O(eps |f| / h); in float64 with h ~ 1e-5 and smooth f of O(1), both are
 * far below 1e-7.
 */
export function numericGrad(f: (x: Float64Array) => number, x: Vec, h = 1e-5): Float64Array {
  const xs = f64(x);
  const g = new Float64Array(xs.length);
  for (let i = 0; i < xs.length; i++) {
    const orig = xs[i];
    xs[i] = orig + h;
    const fp = f(xs);
    xs[i] = orig - h;
    const fm = f(xs);
    xs[i] = orig;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

/** sum_i w[i] * y[i]: the scalar objective whose gradient with respect to y is w. */
export function dot(w: Vec, y: Vec): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += w[i] * y[i];
  return s;
}

// ---- linear algebra ----------------------------------------------------------------------

/** Element (i, j) of op(X) for X stored row-major with `cols` columns. */
function at(x: Vec, cols: number, i: number, j: number, trans: boolean): number {
  return trans ? x[j * cols + i] : x[i * cols + j];
}

export interface GemmDims {
  M: number;
  N: number;
  K: number;
}

/**
 * C = alpha op(A) op(B) + beta C, with op(A) [M, K] (A stored [K, M] when transA) and op(B)
 * [K, N] (B stored [N, K] when transB). beta == 0 ignores C (C may be null or hold NaN).
 */
export function gemm(
  transA: boolean,
  transB: boolean,
  d: GemmDims,
  alpha: number,
  a: Vec,
  b: Vec,
  beta: number,
  c: Vec | null,
): Float64Array {
  const { M, N, K } = d;
  const aCols = transA ? M : K,
    bCols = transB ? K : N;
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += at(a, aCols, i, k, transA) * at(b, bCols, k, j, transB);
      out[i * N + j] = alpha * s + (beta === 0 ? 0 : beta * (c as Vec)[i * N + j]);
    }
  }
  return out;
}

/**
 * The rounding-error scale of each element of gemm(): |alpha| sum_k |op(A)_ik op(B)_kj| +
 * |beta| |C_ij|. A float32 dot product of length K is within about K * 2^-24 of this scale.
 */
export function gemmErrorScale(
  transA: boolean,
  transB: boolean,
  d: GemmDims,
  alpha: number,
  a: Vec,
  b: Vec,
  beta: number,
  c: Vec | null,
): Float64Array {
  const abs = (v: Vec) => Float64Array.from(v as ArrayLike<number>, Math.abs);
  return gemm(transA, transB, d, Math.abs(alpha), abs(a), abs(b), Math.abs(beta), c ? abs(c) : null);
}

/** y[r, c] + bias[c] for y [rows, cols]. */
export function addBias(y: Vec, bias: Vec, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r * cols + c] = y[r * cols + c] + bias[c];
  return out;
}

/** Column sums of x [rows, cols]. */
export function columnSums(x: Vec, rows: number, cols: number): Float64Array {
  const out = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c] += x[r * cols + c];
  return out;
}

// ---- activations -------------------------------------------------------------------------

export type ActivationName = 'relu' | 'tanh' | 'sigmoid';

export function activation(act: ActivationName, x: Vec): Float64Array {
  const f = act === 'relu' ? (v: number) => (v < 0 ? 0 : v) : act === 'tanh' ? Math.tanh : (v: number) => 1 / (1 + Math.exp(-v));
  return Float64Array.from(x as ArrayLike<number>, f);
}

// ---- BatchNorm ---------------------------------------------------------------------------

export interface BatchNormTraining {
  y: Float64Array;
  /** batch mean per column */
  mean: Float64Array;
  /** biased batch variance per column (used to normalise) */
  varBiased: Float64Array;
  /** 1 / sqrt(varBiased + eps) */
  invStd: Float64Array;
  runningMean: Float64Array;
  runningVar: Float64Array;
}

/**
 * Training-mode BatchNorm over the rows of x [rows, cols]: normalises with the batch mean and
 * the biased batch variance; running = (1 - momentum) running + momentum batchStat, with the
 * unbiased variance for runningVar (as PyTorch).
 */
export function batchNormTraining(
  x: Vec,
  gamma: Vec,
  beta: Vec,
  runningMean: Vec,
  runningVar: Vec,
  rows: number,
  cols: number,
  momentum: number,
  eps: number,
): BatchNormTraining {
  const mean = columnSums(x, rows, cols).map((s) => s / rows);
  const varBiased = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) varBiased[c] += (x[r * cols + c] - mean[c]) ** 2;
  for (let c = 0; c < cols; c++) varBiased[c] /= rows;
  const invStd = varBiased.map((v) => 1 / Math.sqrt(v + eps));
  const y = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) y[r * cols + c] = (x[r * cols + c] - mean[c]) * invStd[c] * gamma[c] + beta[c];
  const rm = new Float64Array(cols),
    rv = new Float64Array(cols);
  for (let c = 0; c < cols; c++) {
    rm[c] = (1 - momentum) * runningMean[c] + momentum * mean[c];
    rv[c] = (1 - momentum) * runningVar[c] + momentum * varBiased[c] * (rows / (rows - 1));
  }
  return { y, mean, varBiased, invStd, runningMean: rm, runningVar: rv };
}

/** Inference-mode BatchNorm: y = (x - runningMean) / sqrt(runningVar + eps) gamma + beta. */
export function batchNormInference(
  x: Vec,
  gamma: Vec,
  beta: Vec,
  runningMean: Vec,
  runningVar: Vec,
  rows: number,
  cols: number,
  eps: number,
): Float64Array {
  const y = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++)
      y[r * cols + c] = ((x[r * cols + c] - runningMean[c]) / Math.sqrt(runningVar[c] + eps)) * gamma[c] + beta[c];
  return y;
}

// ---- losses ------------------------------------------------------------------------------

export function softmax(logits: Vec, rows: number, classes: number): Float64Array {
  const p = new Float64Array(rows * classes);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let c = 0; c < classes; c++) m = Math.max(m, logits[r * classes + c]);
    let s = 0;
    for (let c = 0; c < classes; c++) s += p[r * classes + c] = Math.exp(logits[r * classes + c] - m);
    for (let c = 0; c < classes; c++) p[r * classes + c] /= s;
  }
  return p;
}

/** Mean over rows of -log softmax(logits)[label]. */
export function softmaxCrossEntropy(logits: Vec, labels: Vec, rows: number, classes: number): number {
  let total = 0;
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let c = 0; c < classes; c++) m = Math.max(m, logits[r * classes + c]);
    let s = 0;
    for (let c = 0; c < classes; c++) s += Math.exp(logits[r * classes + c] - m);
    total += Math.log(s) - (logits[r * classes + labels[r]] - m);
  }
  return total / rows;
}

/** Mean over all elements of (pred - target)^2. */
export function mse(pred: Vec, target: Vec): number {
  let s = 0;
  for (let i = 0; i < pred.length; i++) s += (pred[i] - target[i]) ** 2;
  return s / pred.length;
}

// ---- shape ops ---------------------------------------------------------------------------

export function oneHot(labels: Vec, classes: number): Float64Array {
  const out = new Float64Array(labels.length * classes);
  for (let r = 0; r < labels.length; r++) out[r * classes + labels[r]] = 1;
  return out;
}

/** [a | b] for a [rows, colsA] and b [rows, colsB]. */
export function concatColumns(a: Vec, b: Vec, rows: number, colsA: number, colsB: number): Float64Array {
  const cols = colsA + colsB;
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < colsA; c++) out[r * cols + c] = a[r * colsA + c];
    for (let c = 0; c < colsB; c++) out[r * cols + colsA + c] = b[r * colsB + c];
  }
  return out;
}

/** The columns [c0, c1) of x [rows, cols]. */
export function sliceColumns(x: Vec, rows: number, cols: number, c0: number, c1: number): Float64Array {
  const w = c1 - c0;
  const out = new Float64Array(rows * w);
  for (let r = 0; r < rows; r++) for (let c = 0; c < w; c++) out[r * w + c] = x[r * cols + c0 + c];
  return out;
}

// ---- optimizers (PyTorch semantics), updating the arrays in place --------------------------

/** g' = g + wd p; momentum 0: p -= lr g'; else v = momentum v + g', p -= lr v. */
export function sgdStep(
  param: Float64Array,
  grad: Vec,
  velocity: Float64Array | null,
  lr: number,
  momentum: number,
  weightDecay: number,
): void {
  for (let i = 0; i < param.length; i++) {
    const g = grad[i] + weightDecay * param[i];
    if (momentum === 0) {
      param[i] -= lr * g;
    } else {
      const v = velocity as Float64Array;
      v[i] = momentum * v[i] + g;
      param[i] -= lr * v[i];
    }
  }
}

/** torch.optim.Adam (L2 weight decay added to the gradient), step >= 1. */
export function adamStep(
  param: Float64Array,
  grad: Vec,
  m: Float64Array,
  v: Float64Array,
  lr: number,
  beta1: number,
  beta2: number,
  eps: number,
  weightDecay: number,
  step: number,
): void {
  const bc1 = 1 - beta1 ** step,
    bc2 = 1 - beta2 ** step;
  for (let i = 0; i < param.length; i++) {
    const g = grad[i] + weightDecay * param[i];
    m[i] = beta1 * m[i] + (1 - beta1) * g;
    v[i] = beta2 * v[i] + (1 - beta2) * g * g;
    param[i] -= (lr * (m[i] / bc1)) / (Math.sqrt(v[i] / bc2) + eps);
  }
}

/**
 * Fails, naming `what` and the worst element (index, got, want), when the relative error of
 * `got` against `want` exceeds `tol` (errors relative to max(|want|, floor)).
 */
export function expectClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number, floor: number | Vec = 1e-6): void {
  const r = compare(got, want, floor);
  if (!(r.worst <= tol)) throw new Error(`${what}: ${describeReport(r)} (tolerance ${tol})`);
  expect(r.worst).toBeLessThanOrEqual(tol);
}

/** Bit-for-bit equality, reported as expectClose reports. */
export function expectExact(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  expectClose(what, got, want, 0, 1);
}
