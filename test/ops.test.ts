// Numerical tests of every native op on the CPU device (see native/cpu/kernels.h):
//   - forwards against float64 references (test/helpers/reference.ts) evaluated on the very
//     float32 values the tensors hold;
//   - backwards against float64 central finite differences of the reference forward of a
//     scalar objective (usually L = sum(w ⊙ y) with random w, so dL/dy = w is fed as dy);
//   - the output conventions: parameter gradients (dW via gemm's beta = 1, dbias, dgamma,
//     dbeta) ACCUMULATE onto a non-zero start value, dx OVERWRITES a NaN-filled buffer.
//
// Tolerances (u = 2^-24 ≈ 6e-8, the float32 unit roundoff):
//   - FWD_TOL = 1e-5 relative for elementwise forwards: each output is a few float32 roundings
//     (or a few-ulp exp/tanh polynomial) away from the exact value, i.e. <= ~1e-6; a wrong
//     formula is off by >= 1e-2. The floor is the magnitude of the terms that were rounded,
//     so cancellation to ~0 is judged on absolute error at the scale of its inputs.
//   - GEMM: the classic bound |ΔC_ij| <= (K + 2) u (|α| Σ_k |op(A)_ik op(B)_kj| + |β| |C_ij|);
//     we allow twice that, measured against that per-element scale.
//   - GRAD_TOL = 1e-4 relative for float32 analytic gradients against float64 finite
//     differences: with h = 1e-5 the numeric gradient is exact to ~1e-9 (truncation h^2 f'''
//     plus roundoff 1e-16 |f| / h), and the float32 analytic gradient to ~1e-6 (reductions are
//     accumulated in double by the kernels, GEMM's K-term sums in float32: ~K u); the floor
//     is 1e-2 of the gradient's largest element, so components that cancel to ~0 (BatchNorm's
//     dx, sums of signed products) are judged on an absolute error of 1e-6 of the gradient's
//     scale. A wrong formula (a missing term, n instead of n - 1, 1 - y instead of 1 - y^2)
//     is off by >= 1e-2.
//   - Optimizers run several float32 steps against float64 recurrences: OPT_TOL = 1e-5 relative
//     with floor OPT_FLOOR = 0.1, the scale of the parameters, velocities and moments (which
//     are signed sums and may cancel): the drift is a few u of that scale per step, while a
//     missed weight-decay term or a misplaced eps moves them by >= 1e-4 of it.
// Scalar op arguments are float32 in the API (the addon casts them), so references are given
// Math.fround of the same values (e.g. Adam's beta2 = 0.999 is 0.99900001287 in float32, which
// changes 1 - beta2 by 1.3e-5 relative).
import { native, ActivationName } from '../ts/native';
import { Random } from '../ts/random';
import * as ref from './helpers/reference';
import { expectClose, expectExact } from './helpers/reference';
import { cpuTensors } from './helpers/native-tensors';
import { adamStep, sgdStep } from './helpers/optimizer-steps';
import { expectThrows } from './helpers/errors';

const FWD_TOL = 1e-5;
const GRAD_TOL = 1e-4;
const OPT_TOL = 1e-5;
const OPT_FLOOR = 0.1;
const U = 2 ** -24;
const f32 = Math.fround;

const stream = new native.Stream('cpu');
const ops = native.ops;

// ---- tensor helpers ------------------------------------------------------------------------

const { upload, uploadInt, filled, read, readInt } = cpuTensors(stream);

// ---- assertions ----------------------------------------------------------------------------

/** Bit-for-bit equality (NaN equals NaN). */
/** Analytic gradient against a numeric one, floor 1e-2 of the numeric gradient's scale. */
function expectGrad(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol = GRAD_TOL): void {
  expect(ref.maxAbs(want)).toBeGreaterThan(0); // a vacuous all-zero gradient proves nothing
  expectClose(what, got, want, tol, 1e-2 * ref.maxAbs(want));
}

function add(a: ArrayLike<number>, b: ArrayLike<number>, s = 1): Float64Array {
  return Float64Array.from({ length: a.length }, (_, i) => a[i] + s * b[i]);
}

function scaled(a: ArrayLike<number>, s: number): Float64Array {
  return Float64Array.from(a as ArrayLike<number>, (v) => s * v);
}

function absSum(...arrays: ArrayLike<number>[]): Float64Array {
  const out = new Float64Array(arrays[0].length);
  for (const a of arrays) for (let i = 0; i < out.length; i++) out[i] += Math.abs(a[i]);
  return out;
}

// =============================================================================================

describe('copy', () => {
  test('float32: dst (another shape, same size) receives src bit for bit', async () => {
    const rng = new Random(1);
    const src = ref.randomArray(rng, 12);
    const dst = filled([12]);
    ops.copy(stream, upload(src, [3, 4]), dst);
    expectExact('copy', await read(dst), src);
  });

  test('float32: large tensor (several parallel chunks)', async () => {
    const rng = new Random(2);
    const n = (1 << 18) + 3;
    const src = ref.randomArray(rng, n);
    const dst = filled([n]);
    ops.copy(stream, upload(src, [n]), dst);
    expectExact('copy', await read(dst), src);
  });

  test('int32', async () => {
    const src = Int32Array.from([3, -1, 2147483647, -2147483648, 0, 42]);
    const dst = uploadInt(new Int32Array(6).fill(-5), [2, 3]);
    ops.copy(stream, uploadInt(src, [6]), dst);
    expect(Array.from(await readInt(dst))).toEqual(Array.from(src));
  });

  test('rejects a size mismatch and a dtype mismatch', () => {
    expectThrows(() => ops.copy(stream, filled([3]), filled([4])), 'RangeError', /copy: 'dst'/);
    expectThrows(() => ops.copy(stream, filled([3]), uploadInt([1, 2, 3], [3])), 'TypeError', /copy: 'dst'/);
  });
});

describe('fill', () => {
  test('float32: every element becomes the value (rounded to float32)', async () => {
    const rng = new Random(3);
    for (const value of [3.25, -0.1, 1e-3]) {
      const y = upload(ref.randomArray(rng, 63), [7, 9]);
      ops.fill(stream, y, value);
      expectExact(`fill(${value})`, await read(y), new Float32Array(63).fill(f32(value)));
    }
  });

  test('float32: large tensor', async () => {
    const n = (1 << 18) + 7;
    const y = filled([n]);
    ops.fill(stream, y, -2.5);
    expectExact('fill', await read(y), new Float32Array(n).fill(-2.5));
  });

  test('int32', async () => {
    for (const n of [5, (1 << 18) + 1]) {
      const y = uploadInt(new Int32Array(n).fill(9), [n]);
      ops.fill(stream, y, -7);
      const got = await readInt(y);
      expect(got.every((v) => v === -7)).toBe(true);
    }
  });

  test('rejects a non-finite value', () => {
    expectThrows(() => ops.fill(stream, filled([2]), NaN), 'RangeError', /finite/);
    expectThrows(() => ops.fill(stream, filled([2]), Infinity), 'RangeError', /finite/);
  });
});

describe('axpby', () => {
  test.each([
    [1.5, -0.75, 50],
    [1, 1, 50],
    [-0.3, 2.5, (1 << 17) + 5],
  ])('y = %p x + %p y (n = %p)', async (a, b, n) => {
    const rng = new Random(4);
    const x = ref.randomArray(rng, n),
      y0 = ref.randomArray(rng, n);
    const y = upload(y0, [n]);
    ops.axpby(stream, a, upload(x, [n]), b, y);
    const A = f32(a),
      B = f32(b);
    const want = Float64Array.from({ length: n }, (_, i) => A * x[i] + B * y0[i]);
    const scale = Float64Array.from({ length: n }, (_, i) => Math.abs(A * x[i]) + Math.abs(B * y0[i]));
    expectClose('axpby', await read(y), want, FWD_TOL, scale);
  });

  test('b = 0 ignores y (NaN in y does not propagate)', async () => {
    const rng = new Random(5);
    const x = ref.randomArray(rng, 40);
    const y = filled([40]);
    ops.axpby(stream, 1.25, upload(x, [40]), 0, y);
    expectClose('axpby', await read(y), scaled(x, 1.25), FWD_TOL);
  });
});

// =============================================================================================

describe('gemm', () => {
  const sizes: ref.GemmDims[] = [
    { M: 7, K: 13, N: 5 },
    { M: 33, K: 65, N: 17 },
    { M: 130, K: 257, N: 70 },
  ];
  const transposes: [boolean, boolean][] = [
    [false, false],
    [false, true],
    [true, false],
    [true, true],
  ];
  const cases = sizes.flatMap((d) => transposes.map(([ta, tb]) => [d, ta, tb] as const));
  const name = (d: ref.GemmDims, ta: boolean, tb: boolean) => `M=${d.M} K=${d.K} N=${d.N} transA=${ta} transB=${tb}`;

  /** Stored shapes of A and B for op(A) [M, K], op(B) [K, N]. */
  const shapeA = (d: ref.GemmDims, ta: boolean) => (ta ? [d.K, d.M] : [d.M, d.K]);
  const shapeB = (d: ref.GemmDims, tb: boolean) => (tb ? [d.N, d.K] : [d.K, d.N]);

  async function runGemm(d: ref.GemmDims, ta: boolean, tb: boolean, alpha: number, beta: number, seed: number, nanC: boolean) {
    const rng = new Random(seed);
    const a = ref.randomArray(rng, d.M * d.K),
      b = ref.randomArray(rng, d.K * d.N);
    const c0 = nanC ? new Float32Array(d.M * d.N).fill(NaN) : ref.randomArray(rng, d.M * d.N);
    const c = upload(c0, [d.M, d.N]);
    ops.gemm(stream, upload(a, shapeA(d, ta)), upload(b, shapeB(d, tb)), c, ta, tb, alpha, beta);
    const want = ref.gemm(ta, tb, d, alpha, a, b, beta, nanC ? null : c0);
    const scale = ref.gemmErrorScale(ta, tb, d, alpha, a, b, beta, nanC ? null : c0);
    expectClose(`gemm ${name(d, ta, tb)} alpha=${alpha} beta=${beta}`, await read(c), want, 2 * (d.K + 2) * U, scale);
  }

  test.each(cases)('forward, alpha = 1.25, beta = -0.5: %o transA=%p transB=%p', async (d, ta, tb) => {
    await runGemm(d, ta, tb, 1.25, -0.5, 100 + d.K, false);
  });

  test.each(cases)('forward, alpha = 0.75, beta = 0 ignores a NaN-filled C: %o transA=%p transB=%p', async (d, ta, tb) => {
    await runGemm(d, ta, tb, 0.75, 0, 200 + d.K, true);
  });

  test('forward, vector shapes (M = 1, N = 1) and a larger K', async () => {
    await runGemm({ M: 1, K: 300, N: 1 }, false, false, 1, 0, 7, true);
    await runGemm({ M: 1, K: 300, N: 9 }, true, false, 1, 1, 8, false);
    await runGemm({ M: 9, K: 1, N: 31 }, false, true, 2, 0.5, 9, false);
    await runGemm({ M: 40, K: 1100, N: 3 }, true, true, 1, 0, 10, true);
  });

  // Backward of C = alpha op(A) op(B) with L = sum(W ⊙ C): dL/dop(A) = alpha W op(B)^T and
  // dL/dop(B) = alpha op(A)^T W, each itself a gemm on the stored A, B, W; accumulated into
  // dA, dB with beta = 1 (the parameter-gradient convention).
  const gradCases = sizes.slice(0, 2).flatMap((d) => transposes.map(([ta, tb]) => [d, ta, tb] as const));
  test.each(gradCases)('gradients w.r.t. a and b as gemms, accumulated with beta = 1: %o transA=%p transB=%p', async (d, ta, tb) => {
    const alpha = 1.5;
    const rng = new Random(300 + d.K + (ta ? 1 : 0) + (tb ? 2 : 0));
    const a = ref.randomArray(rng, d.M * d.K),
      b = ref.randomArray(rng, d.K * d.N);
    const w = ref.randomArray(rng, d.M * d.N);
    const dA0 = ref.randomArray(rng, d.M * d.K),
      dB0 = ref.randomArray(rng, d.K * d.N);
    const A = upload(a, shapeA(d, ta)),
      B = upload(b, shapeB(d, tb)),
      W = upload(w, [d.M, d.N]);
    const dA = upload(dA0, shapeA(d, ta)),
      dB = upload(dB0, shapeB(d, tb));

    if (!ta)
      ops.gemm(stream, W, B, dA, false, !tb, alpha, 1); // [M,K] = W op(B)^T
    else ops.gemm(stream, B, W, dA, tb, true, alpha, 1); //        [K,M] = op(B) W^T
    if (!tb)
      ops.gemm(stream, A, W, dB, !ta, false, alpha, 1); // [K,N] = op(A)^T W
    else ops.gemm(stream, W, A, dB, true, ta, alpha, 1); //        [N,K] = W^T op(A)

    const L = (av: ArrayLike<number>, bv: ArrayLike<number>) => ref.dot(w, ref.gemm(ta, tb, d, alpha, av, bv, 0, null));
    const gA = ref.numericGrad((x) => L(x, b), a);
    const gB = ref.numericGrad((x) => L(a, x), b);
    expectGrad('dA', await read(dA), add(dA0, gA));
    expectGrad('dB', await read(dB), add(dB0, gB));
  });

  test('rejects mismatched inner dimensions and an output aliasing an input', () => {
    const a = filled([3, 4]),
      b = filled([5, 2]);
    expectThrows(() => ops.gemm(stream, a, b, filled([3, 2]), false, false, 1, 0), 'RangeError', /inner dimensions/);
    const sq = filled([3, 3]);
    expectThrows(() => ops.gemm(stream, sq, filled([3, 3]), sq, false, false, 1, 0), 'RangeError', /share memory/);
  });
});

// =============================================================================================

describe('linearForward', () => {
  const d: ref.GemmDims = { M: 33, K: 65, N: 17 };
  const acts: (ActivationName | null)[] = [null, 'relu', 'tanh', 'sigmoid'];

  test.each(acts)('y = act(x Wᵀ + b) against float64, activation %p, and equal to gemm + addBias + activation', async (act) => {
    const rng = new Random(31);
    const x = ref.uniformArray(rng, d.M * d.K, -1, 1),
      w = ref.uniformArray(rng, d.N * d.K, -1, 1),
      b = ref.uniformArray(rng, d.N, -1, 1);
    const y = filled([d.M, d.N]);
    ops.linearForward(stream, upload(x, [d.M, d.K]), upload(w, [d.N, d.K]), upload(b, [d.N]), y, act);
    const pre = ref.addBias(ref.gemm(false, true, d, 1, x, w, 0, null), b, d.M, d.N);
    const want = act ? ref.activation(act, pre) : pre;
    // Error of the pre-activation (sum of |x||w| + |b|, fp32 accumulation), at most ~1 through the activations.
    const scale = add(
      ref.gemm(false, true, d, 1, absSum(x), absSum(w), 0, null),
      Float64Array.from(pre, (_, i) => Math.abs(b[i % d.N])),
    );
    expectClose(`linearForward ${act}`, await read(y), want, 2 * (d.K + 3) * U + FWD_TOL, scale);
    // The unfused sequence, bit for bit.
    const y2 = filled([d.M, d.N]);
    ops.gemm(stream, upload(x, [d.M, d.K]), upload(w, [d.N, d.K]), y2, false, true, 1, 0);
    ops.addBias(stream, y2, upload(b, [d.N]));
    if (act) ops.activationForward(stream, act, y2, y2);
    expectExact(`linearForward ${act} vs gemm + addBias`, await read(y), await read(y2));
  });

  test('without a bias; bad shapes are clear errors', async () => {
    const x = upload([1, 2, 3, 4, 5, 6], [2, 3]),
      w = upload([1, 0, 0, 0, 1, 0], [2, 3]);
    const y = filled([2, 2]);
    ops.linearForward(stream, x, w, null, y, null);
    expectExact('x Wᵀ', await read(y), [1, 2, 4, 5]);
    expectThrows(
      () => ops.linearForward(stream, x, filled([2, 4]), null, y, null),
      'RangeError',
      /linearForward: 'w' must have shape \[outFeatures, 3\]/,
    );
    expectThrows(() => ops.linearForward(stream, x, w, filled([3]), y, null), 'RangeError', /linearForward: 'bias' must have shape \[2\]/);
    expectThrows(
      () => ops.linearForward(stream, x, w, null, filled([2, 3]), null),
      'RangeError',
      /linearForward: 'y' must have shape \[2,2\]/,
    );
    expectThrows(() => ops.linearForward(stream, x, w, null, y, 'gelu' as ActivationName), 'TypeError', /'relu', 'tanh' or 'sigmoid'/);
  });
});

// =============================================================================================

describe('addBias / biasBackward', () => {
  test.each([
    [7, 13],
    [300, 257],
  ])('addBias: y += bias for y [%p, %p]', async (rows, cols) => {
    const rng = new Random(11);
    const y0 = ref.randomArray(rng, rows * cols),
      bias = ref.randomArray(rng, cols);
    const y = upload(y0, [rows, cols]);
    ops.addBias(stream, y, upload(bias, [cols]));
    const want = ref.addBias(y0, bias, rows, cols);
    const scale = Float64Array.from(want, (_, i) => Math.abs(y0[i]) + Math.abs(bias[i % cols]));
    expectClose('addBias', await read(y), want, FWD_TOL, scale);
  });

  test.each([
    [7, 13],
    [3000, 70],
    [5, 5000],
    [1025, 3],
  ])('biasBackward: dbias += column sums of dy [%p, %p]', async (rows, cols) => {
    const rng = new Random(12);
    const dy = ref.randomArray(rng, rows * cols),
      d0 = ref.randomArray(rng, cols);
    const dbias = upload(d0, [cols]);
    ops.biasBackward(stream, upload(dy, [rows, cols]), dbias);
    const want = add(d0, ref.columnSums(dy, rows, cols));
    const scale = add(absSum(d0), ref.columnSums(absSum(dy), rows, cols));
    // Summed in double, rounded once (plus the float32 +=): a few u of the scale.
    expectClose('dbias', await read(dbias), want, 1e-6, scale);
  });

  test('biasBackward is the gradient of addBias (finite differences), accumulated', async () => {
    const rows = 9,
      cols = 6;
    const rng = new Random(13);
    const y0 = ref.randomArray(rng, rows * cols),
      bias = ref.randomArray(rng, cols);
    const w = ref.randomArray(rng, rows * cols),
      d0 = ref.randomArray(rng, cols);
    const dbias = upload(d0, [cols]);
    ops.biasBackward(stream, upload(w, [rows, cols]), dbias);
    const g = ref.numericGrad((bv) => ref.dot(w, ref.addBias(y0, bv, rows, cols)), bias);
    expectGrad('dbias', await read(dbias), add(d0, g));
  });
});

// =============================================================================================

describe('activationForward / activationBackward', () => {
  const acts: ActivationName[] = ['relu', 'tanh', 'sigmoid'];
  const rows = 37,
    cols = 29;

  test.each(acts)('%s forward (and in place)', async (act) => {
    const rng = new Random(21);
    const x = ref.randomArray(rng, rows * cols, 0.1, 3);
    const want = ref.activation(act, x);
    const y = filled([rows, cols]);
    ops.activationForward(stream, act, upload(x, [rows, cols]), y);
    expectClose(`${act}(x)`, await read(y), want, FWD_TOL);
    if (act === 'relu') expectExact('relu(x)', await read(y), want);

    const xy = upload(x, [rows, cols]);
    ops.activationForward(stream, act, xy, xy);
    expectExact(`${act} in place`, await read(xy), await read(y));
  });

  test.each(acts)('%s forward on large inputs and at the extremes', async (act) => {
    const rng = new Random(22);
    const n = (1 << 16) + 11;
    const x = ref.randomArray(rng, n, 1e-4, 30);
    x.set([1e-30, -1e-30, 50, -50, 100, -100, 1e-7, -1e-7]);
    const y = filled([n]);
    ops.activationForward(stream, act, upload(x, [n]), y);
    // The floor 1e-30 keeps the tolerance relative down to tiny outputs, except for
    // sigmoid(-100) ~ 4e-44, which is below float32's normal range (the kernel flushes it to 0).
    expectClose(`${act}(x)`, await read(y), ref.activation(act, x), FWD_TOL, 1e-30);
  });

  test.each(acts)("%s backward: dx = dy ⊙ act'(x) (finite differences), NaN dx overwritten, in place", async (act) => {
    const rng = new Random(23);
    const x = ref.randomArray(rng, rows * cols, 0.1, 3);
    const w = ref.randomArray(rng, rows * cols);
    const y = filled([rows, cols]);
    ops.activationForward(stream, act, upload(x, [rows, cols]), y);
    const dx = filled([rows, cols]);
    ops.activationBackward(stream, act, y, upload(w, [rows, cols]), dx);
    const g = ref.numericGrad((xv) => ref.dot(w, ref.activation(act, xv)), x);
    const got = await read(dx);
    expectGrad(`${act} dx`, got, g);

    const dyInPlace = upload(w, [rows, cols]);
    ops.activationBackward(stream, act, y, dyInPlace, dyInPlace);
    expectExact(`${act} backward in place`, await read(dyInPlace), got);
  });
});

// =============================================================================================

describe('batchNormForward / batchNormBackward', () => {
  const momentum = 0.1,
    eps = 1e-5;
  const M = f32(momentum),
    E = f32(eps);

  /** x [rows, cols] with per-column offsets and spreads, and the other BatchNorm inputs. */
  function bnInputs(seed: number, rows: number, cols: number, offset = 0) {
    const rng = new Random(seed);
    const x = new Float32Array(rows * cols);
    const noise = ref.randomArray(rng, rows * cols);
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) x[r * cols + c] = offset + 0.5 * c - 1 + (0.5 + c * 0.3) * noise[r * cols + c];
    return {
      x,
      gamma: ref.randomArray(rng, cols, 0.5, 2),
      beta: ref.randomArray(rng, cols),
      runningMean: ref.randomArray(rng, cols),
      runningVar: ref.uniformArray(rng, cols, 0.5, 1.5),
    };
  }

  /** Runs the forward in training or inference mode on fresh tensors; returns them read. */
  async function forward(inp: ReturnType<typeof bnInputs>, rows: number, cols: number, training: boolean, mom = momentum) {
    const t = {
      x: upload(inp.x, [rows, cols]),
      gamma: upload(inp.gamma, [cols]),
      beta: upload(inp.beta, [cols]),
      y: filled([rows, cols]),
      runningMean: upload(inp.runningMean, [cols]),
      runningVar: upload(inp.runningVar, [cols]),
      saveMean: filled([cols], 42),
      saveInvStd: filled([cols], 43),
    };
    ops.batchNormForward(stream, t.x, t.gamma, t.beta, t.y, t.runningMean, t.runningVar, t.saveMean, t.saveInvStd, mom, eps, training);
    return {
      tensors: t,
      y: await read(t.y),
      runningMean: await read(t.runningMean),
      runningVar: await read(t.runningVar),
      saveMean: await read(t.saveMean),
      saveInvStd: await read(t.saveInvStd),
    };
  }

  test.each([
    [16, 5, 0],
    [2500, 3, 0],
    [64, 7, 1000],
    [2, 4, 0],
  ])('training forward [%p, %p] (offset %p): y, saved stats, running stats', async (rows, cols, offset) => {
    const inp = bnInputs(31 + rows, rows, cols, offset);
    const got = await forward(inp, rows, cols, true);
    const want = ref.batchNormTraining(inp.x, inp.gamma, inp.beta, inp.runningMean, inp.runningVar, rows, cols, M, E);
    // Error scale of y: |xhat gamma| + |beta|.
    const scale = Float64Array.from(want.y, (v, i) => Math.abs(v - inp.beta[i % cols]) + Math.abs(inp.beta[i % cols]));
    expectClose('y', got.y, want.y, FWD_TOL, scale);
    expectClose('saveMean', got.saveMean, want.mean, FWD_TOL, 1e-3 + Math.abs(offset) * 1e-3);
    expectClose('saveInvStd', got.saveInvStd, want.invStd, FWD_TOL);
    expectClose('runningMean', got.runningMean, want.runningMean, FWD_TOL, 1e-3);
    expectClose('runningVar (unbiased batch var)', got.runningVar, want.runningVar, FWD_TOL);
  });

  test('momentum 1 replaces the running stats by the batch stats; momentum 0 keeps them', async () => {
    const rows = 10,
      cols = 4;
    const inp = bnInputs(35, rows, cols);
    const want = ref.batchNormTraining(inp.x, inp.gamma, inp.beta, inp.runningMean, inp.runningVar, rows, cols, 1, E);
    const one = await forward(inp, rows, cols, true, 1);
    expectClose('runningMean', one.runningMean, want.mean, FWD_TOL, 1e-3);
    expectClose('runningVar', one.runningVar, scaled(want.varBiased, rows / (rows - 1)), FWD_TOL);
    const zero = await forward(inp, rows, cols, true, 0);
    expectExact('runningMean', zero.runningMean, inp.runningMean);
    expectExact('runningVar', zero.runningVar, inp.runningVar);
    expectClose('y (momentum does not change it)', zero.y, one.y, FWD_TOL, 1);
  });

  test('inference forward: uses the running stats, leaves running and saved stats untouched', async () => {
    const rows = 16,
      cols = 5;
    const inp = bnInputs(36, rows, cols);
    const got = await forward(inp, rows, cols, false);
    const want = ref.batchNormInference(inp.x, inp.gamma, inp.beta, inp.runningMean, inp.runningVar, rows, cols, E);
    const scale = Float64Array.from(want, (v, i) => Math.abs(v - inp.beta[i % cols]) + Math.abs(inp.beta[i % cols]));
    expectClose('y', got.y, want, FWD_TOL, scale);
    expectExact('runningMean', got.runningMean, inp.runningMean);
    expectExact('runningVar', got.runningVar, inp.runningVar);
    expectExact('saveMean', got.saveMean, new Float32Array(cols).fill(42));
    expectExact('saveInvStd', got.saveInvStd, new Float32Array(cols).fill(43));
  });

  test.each([
    [16, 5],
    [3, 2],
    [1100, 3],
  ])('backward [%p, %p]: dx (overwritten), dgamma and dbeta (accumulated) against finite differences', async (rows, cols) => {
    const inp = bnInputs(37 + rows, rows, cols);
    const rng = new Random(38);
    const w = ref.randomArray(rng, rows * cols);
    const dgamma0 = ref.randomArray(rng, cols),
      dbeta0 = ref.randomArray(rng, cols);
    const fwd = await forward(inp, rows, cols, true);
    const t = fwd.tensors;
    const dx = filled([rows, cols]);
    const dgamma = upload(dgamma0, [cols]),
      dbeta = upload(dbeta0, [cols]);
    ops.batchNormBackward(stream, t.x, upload(w, [rows, cols]), t.gamma, t.saveMean, t.saveInvStd, dx, dgamma, dbeta);

    const L = (x: ArrayLike<number>, gamma: ArrayLike<number>, beta: ArrayLike<number>) =>
      ref.dot(w, ref.batchNormTraining(x, gamma, beta, inp.runningMean, inp.runningVar, rows, cols, M, E).y);
    const gx = ref.numericGrad((v) => L(v, inp.gamma, inp.beta), inp.x);
    const gGamma = ref.numericGrad((v) => L(inp.x, v, inp.beta), inp.gamma);
    const gBeta = ref.numericGrad((v) => L(inp.x, inp.gamma, v), inp.beta);
    expectGrad('dx', await read(dx), gx);
    expectGrad('dgamma', await read(dgamma), add(dgamma0, gGamma));
    expectGrad('dbeta', await read(dbeta), add(dbeta0, gBeta));
  });
});

// =============================================================================================

describe('softmaxCrossEntropyForward / softmaxCrossEntropyBackward', () => {
  const rows = 11,
    classes = 7;

  function inputs(seed: number, offset = 0) {
    const rng = new Random(seed);
    const logits = ref.randomArray(rng, rows * classes, 0.1, 3).map((v) => v + offset);
    return { logits, labels: ref.randomLabels(rng, rows, classes) };
  }

  async function forward(logits: Float32Array, labels: Int32Array, r = rows, k = classes) {
    const probs = filled([r, k]),
      loss = filled([1]);
    ops.softmaxCrossEntropyForward(stream, upload(logits, [r, k]), uploadInt(labels, [r]), probs, loss);
    return { probs, loss, p: await read(probs), l: (await read(loss))[0] };
  }

  test.each([0, 80, -1000])('forward: probs = softmax, loss = mean -log p[label] (logits offset %p)', async (offset) => {
    const { logits, labels } = inputs(41, offset);
    const got = await forward(logits, labels);
    expectClose('probs', got.p, ref.softmax(logits, rows, classes), FWD_TOL);
    // An offset of |o| makes the float32 logits carry absolute rounding |o| u; softmax is
    // shift-invariant, so the reference on the same float32 logits stays the yardstick.
    expectClose('loss', [got.l], [ref.softmaxCrossEntropy(logits, labels, rows, classes)], FWD_TOL);
  });

  test('forward: a label whose probability underflows still gives a finite, exact loss', async () => {
    const logits = Float32Array.from([100, -100, 0.5, 3, -2, 1]);
    const labels = Int32Array.from([1, 2]);
    const got = await forward(logits, labels, 2, 3);
    const want = ref.softmaxCrossEntropy(logits, labels, 2, 3);
    expect(want).toBeGreaterThan(99);
    expectClose('loss', [got.l], [want], FWD_TOL);
    expectClose('probs', got.p, ref.softmax(logits, 2, 3), FWD_TOL, 1e-30);
  });

  test.each([1, 0.5, 3])('backward, scale %p: dlogits = scale dL/dlogits (finite differences), NaN overwritten', async (scale) => {
    const { logits, labels } = inputs(42);
    const fwd = await forward(logits, labels);
    const dlogits = filled([rows, classes]);
    ops.softmaxCrossEntropyBackward(stream, fwd.probs, uploadInt(labels, [rows]), dlogits, scale);
    const g = ref.numericGrad((z) => ref.softmaxCrossEntropy(z, labels, rows, classes), logits);
    expectGrad('dlogits', await read(dlogits), scaled(g, scale));
  });

  test('backward in place (dlogits = probs) gives the same result', async () => {
    const { logits, labels } = inputs(43);
    const fwd = await forward(logits, labels);
    const L = uploadInt(labels, [rows]);
    const dlogits = filled([rows, classes]);
    ops.softmaxCrossEntropyBackward(stream, fwd.probs, L, dlogits, 1);
    const want = await read(dlogits);
    ops.softmaxCrossEntropyBackward(stream, fwd.probs, L, fwd.probs, 1);
    expectExact('dlogits in place', await read(fwd.probs), want);
  });

  test('forward with an out-of-range label fails the stream and writes nothing', async () => {
    const s = new native.Stream('cpu');
    const probs = filled([2, 3]),
      loss = filled([1]);
    ops.softmaxCrossEntropyForward(s, upload([1, 2, 3, 4, 5, 6], [2, 3]), uploadInt([0, 3], [2]), probs, loss);
    await expect(s.synchronize()).rejects.toThrow(/label/);
    expectExact('probs', await read(probs), new Float32Array(6).fill(NaN));
    expectExact('loss', await read(loss), [NaN]);
  });
});

// =============================================================================================

describe('mseForward / mseBackward', () => {
  test.each([
    [9, 13],
    [100003, 1],
  ])('forward: mean squared error over [%p, %p]', async (r, c) => {
    const rng = new Random(51);
    const pred = ref.randomArray(rng, r * c),
      target = ref.randomArray(rng, r * c);
    const loss = filled([1]);
    ops.mseForward(stream, upload(pred, [r, c]), upload(target, [r, c]), loss);
    // Summed in double, rounded once.
    expectClose('loss', await read(loss), [ref.mse(pred, target)], 1e-6);
  });

  test.each([1, 3])('backward, scale %p: dpred = scale dL/dpred (finite differences), NaN overwritten', async (scale) => {
    const rng = new Random(52);
    const n = 9 * 13;
    const pred = ref.randomArray(rng, n),
      target = ref.randomArray(rng, n);
    const dpred = filled([9, 13]);
    ops.mseBackward(stream, upload(pred, [9, 13]), upload(target, [9, 13]), dpred, scale);
    const g = ref.numericGrad((p) => ref.mse(p, target), pred);
    expectGrad('dpred', await read(dpred), scaled(g, scale));
  });

  test('backward in place (dpred = pred) gives the same result', async () => {
    const rng = new Random(53);
    const pred = ref.randomArray(rng, 20),
      target = ref.randomArray(rng, 20);
    const T = upload(target, [20]);
    const dpred = filled([20]);
    ops.mseBackward(stream, upload(pred, [20]), T, dpred, 2);
    const P = upload(pred, [20]);
    ops.mseBackward(stream, P, T, P, 2);
    expectExact('dpred in place', await read(P), await read(dpred));
  });
});

// =============================================================================================

describe('oneHot', () => {
  test.each([
    [12, 5],
    [20000, 10],
  ])('rows of a NaN-filled [%p, %p] become one-hot', async (rows, classes) => {
    const labels = ref.randomLabels(new Random(61), rows, classes);
    const out = filled([rows, classes]);
    ops.oneHot(stream, uploadInt(labels, [rows]), out);
    expectExact('oneHot', await read(out), ref.oneHot(labels, classes));
  });

  test.each([[[0, 5, 1]], [[0, -1, 1]]])('an out-of-range label %p fails the stream', async (labels) => {
    const s = new native.Stream('cpu');
    ops.oneHot(s, uploadInt(labels, [3]), filled([3, 5]));
    await expect(s.synchronize()).rejects.toThrow(/label/);
  });
});

// =============================================================================================

describe('concatColumns / splitColumns', () => {
  test.each([
    [5, 3, 4],
    [20000, 3, 4],
    [4, 1, 9],
  ])('concat [%p, %p] | [%p rows, %p cols]', async (rows, colsA, colsB) => {
    const rng = new Random(71);
    const a = ref.randomArray(rng, rows * colsA),
      b = ref.randomArray(rng, rows * colsB);
    const out = filled([rows, colsA + colsB]);
    ops.concatColumns(stream, upload(a, [rows, colsA]), upload(b, [rows, colsB]), out);
    expectExact('concat', await read(out), ref.concatColumns(a, b, rows, colsA, colsB));
  });

  test.each([
    [5, 3, 4],
    [20000, 3, 4],
  ])('split [%p, %p + %p] into NaN-filled halves', async (rows, colsA, colsB) => {
    const cols = colsA + colsB;
    const dout = ref.randomArray(new Random(72), rows * cols);
    const da = filled([rows, colsA]),
      db = filled([rows, colsB]);
    ops.splitColumns(stream, upload(dout, [rows, cols]), da, db);
    expectExact('da', await read(da), ref.sliceColumns(dout, rows, cols, 0, colsA));
    expectExact('db', await read(db), ref.sliceColumns(dout, rows, cols, colsA, cols));
  });

  test('split with a null half writes only the other one', async () => {
    const rows = 6,
      colsA = 2,
      colsB = 5,
      cols = colsA + colsB;
    const dout = ref.randomArray(new Random(73), rows * cols);
    const D = upload(dout, [rows, cols]);
    const da = filled([rows, colsA]);
    ops.splitColumns(stream, D, da, null);
    expectExact('da', await read(da), ref.sliceColumns(dout, rows, cols, 0, colsA));
    const db = filled([rows, colsB]);
    ops.splitColumns(stream, D, null, db); // colsA inferred as cols(dout) - cols(db)
    expectExact('db', await read(db), ref.sliceColumns(dout, rows, cols, colsA, cols));
    expectThrows(() => ops.splitColumns(stream, D, null, null), 'TypeError', /splitColumns/);
  });

  test('split is the gradient of concat (finite differences)', async () => {
    const rows = 4,
      colsA = 3,
      colsB = 2;
    const rng = new Random(74);
    const a = ref.randomArray(rng, rows * colsA),
      b = ref.randomArray(rng, rows * colsB);
    const w = ref.randomArray(rng, rows * (colsA + colsB));
    const da = filled([rows, colsA]),
      db = filled([rows, colsB]);
    ops.splitColumns(stream, upload(w, [rows, colsA + colsB]), da, db);
    const ga = ref.numericGrad((v) => ref.dot(w, ref.concatColumns(v, b, rows, colsA, colsB)), a);
    const gb = ref.numericGrad((v) => ref.dot(w, ref.concatColumns(a, v, rows, colsA, colsB)), b);
    expectGrad('da', await read(da), ga);
    expectGrad('db', await read(db), gb);
  });
});

// =============================================================================================

describe('sgdStepGroup on one tensor', () => {
  const shape = [6, 7],
    n = 42,
    steps = 5;

  test.each([
    [0, 0.01, false],
    [0.9, 0.01, false],
    [0.9, 0.05, true],
    [0.5, 0, true],
  ])('momentum %p, weight decay %p (non-zero start velocity: %p), 5 steps', async (momentum, wd, v0Random) => {
    const lr = 0.1;
    const rng = new Random(81);
    const p0 = ref.randomArray(rng, n);
    const v0 = v0Random ? ref.randomArray(rng, n) : new Float32Array(n);
    const param = upload(p0, shape),
      velocity = upload(v0, shape);
    const P = ref.f64(p0),
      V = ref.f64(v0);
    for (let step = 0; step < steps; step++) {
      const g = ref.randomArray(rng, n);
      sgdStep(stream, param, upload(g, shape), velocity, lr, momentum, wd);
      ref.sgdStep(P, g, V, f32(lr), f32(momentum), f32(wd));
      expectClose(`param after step ${step + 1}`, await read(param), P, OPT_TOL, OPT_FLOOR);
      if (momentum === 0) expectExact('velocity untouched with momentum 0', await read(velocity), v0);
      else expectClose(`velocity after step ${step + 1}`, await read(velocity), V, OPT_TOL, OPT_FLOOR);
    }
    // Guard against a no-op: the parameters moved.
    expect(ref.compare(await read(param), p0).worst).toBeGreaterThan(1e-2);
  });

  test('momentum 0 needs no velocity (null)', async () => {
    const rng = new Random(82);
    const p0 = ref.randomArray(rng, n),
      g = ref.randomArray(rng, n);
    const param = upload(p0, shape);
    sgdStep(stream, param, upload(g, shape), null, 0.25, 0, 0);
    const P = ref.f64(p0);
    ref.sgdStep(P, g, null, 0.25, 0, 0);
    expectClose('param', await read(param), P, OPT_TOL, OPT_FLOOR);
  });
});

describe('adamStepGroup on one tensor', () => {
  const shape = [6, 7],
    n = 42;

  test.each([
    [0.01, 0.9, 0.999, 1e-8, 0],
    [0.01, 0.9, 0.999, 1e-8, 0.01],
    [0.003, 0.8, 0.99, 1e-3, 0.1],
  ])('lr %p, betas (%p, %p), eps %p, weight decay %p: 6 steps with bias correction', async (lr, b1, b2, eps, wd) => {
    const rng = new Random(91);
    const p0 = ref.randomArray(rng, n);
    const param = upload(p0, shape),
      m = upload(new Float32Array(n), shape),
      v = upload(new Float32Array(n), shape);
    const P = ref.f64(p0),
      Mm = new Float64Array(n),
      Vv = new Float64Array(n);
    for (let step = 1; step <= 6; step++) {
      const g = ref.randomArray(rng, n);
      adamStep(stream, param, upload(g, shape), m, v, lr, b1, b2, eps, wd, step);
      ref.adamStep(P, g, Mm, Vv, f32(lr), f32(b1), f32(b2), f32(eps), f32(wd), step);
      expectClose(`m after step ${step}`, await read(m), Mm, OPT_TOL, OPT_FLOOR);
      expectClose(`v after step ${step}`, await read(v), Vv, OPT_TOL, 1e-8);
      expectClose(`param after step ${step}`, await read(param), P, OPT_TOL, OPT_FLOOR);
    }
  });

  test('the first step moves every parameter by about lr against the gradient sign', async () => {
    const rng = new Random(92);
    const p0 = ref.randomArray(rng, n),
      g = ref.randomArray(rng, n);
    const param = upload(p0, shape);
    adamStep(stream, param, upload(g, shape), filled(shape, 0), filled(shape, 0), 0.01, 0.9, 0.999, 1e-8, 0, 1);
    const moved = await read(param);
    // Bias-corrected m / sqrt(v) = g / |g| at step 1: the step is lr sign(g) (up to eps / |g|).
    const want = Float64Array.from(p0, (p, i) => p - f32(0.01) * Math.sign(g[i]));
    expectClose('param', moved, want, 1e-5, 1);
  });

  test('restarting from saved moments at a later step matches continuing', async () => {
    // The step number alone drives the bias correction: steps 1..3 on one set of tensors and
    // step 3 on copies of the moments after step 2 must agree bit for bit.
    const rng = new Random(93);
    const p0 = ref.randomArray(rng, n);
    const gs = [ref.randomArray(rng, n), ref.randomArray(rng, n), ref.randomArray(rng, n)];
    const param = upload(p0, shape),
      m = filled(shape, 0),
      v = filled(shape, 0);
    for (let s = 1; s <= 2; s++) adamStep(stream, param, upload(gs[s - 1], shape), m, v, 0.01, 0.9, 0.999, 1e-8, 0.01, s);
    const p2 = upload(await read(param), shape),
      m2 = upload(await read(m), shape),
      v2 = upload(await read(v), shape);
    adamStep(stream, param, upload(gs[2], shape), m, v, 0.01, 0.9, 0.999, 1e-8, 0.01, 3);
    adamStep(stream, p2, upload(gs[2], shape), m2, v2, 0.01, 0.9, 0.999, 1e-8, 0.01, 3);
    expectExact('param', await read(p2), await read(param));
    expectThrows(() => adamStep(stream, param, upload(gs[0], shape), m, v, 0.01, 0.9, 0.999, 1e-8, 0, 0), 'RangeError', /step/);
  });
});

// =============================================================================================

describe('results do not depend on the thread count', () => {
  // kernels.h / gemm.cpp: reductions and GEMM use fixed chunkings, so results are
  // bit-identical for any parallelism.
  const original = native.threads();
  afterAll(() => native.threads(original));

  async function runAll(threads: number) {
    native.threads(threads);
    const rng = new Random(101);
    const rows = 3000,
      cols = 70;
    const x = upload(ref.randomArray(rng, rows * cols), [rows, cols]);
    const dy = upload(ref.randomArray(rng, rows * cols), [rows, cols]);
    const gamma = upload(ref.randomArray(rng, cols), [cols]),
      beta = upload(ref.randomArray(rng, cols), [cols]);
    const out: Float32Array[] = [];

    const dbias = filled([cols], 0.5);
    ops.biasBackward(stream, dy, dbias);
    out.push(await read(dbias));

    const y = filled([rows, cols]),
      rm = filled([cols], 0),
      rv = filled([cols], 1);
    const sm = filled([cols]),
      si = filled([cols]);
    ops.batchNormForward(stream, x, gamma, beta, y, rm, rv, sm, si, 0.1, 1e-5, true);
    const dx = filled([rows, cols]),
      dg = filled([cols], 0),
      db = filled([cols], 0);
    ops.batchNormBackward(stream, x, dy, gamma, sm, si, dx, dg, db);
    for (const t of [y, rm, rv, sm, si, dx, dg, db]) out.push(await read(t));

    const loss = filled([1]);
    ops.mseForward(stream, x, dy, loss);
    out.push(await read(loss));

    const a = upload(ref.randomArray(rng, 300 * 500), [300, 500]);
    const b = upload(ref.randomArray(rng, 500 * 260), [500, 260]);
    const c = filled([300, 260]);
    ops.gemm(stream, a, b, c, false, false, 1, 0);
    out.push(await read(c));
    return out;
  }

  test('1 thread vs 3 threads: bit-identical', async () => {
    const one = await runAll(1);
    const three = await runAll(3);
    expect(one.length).toBe(three.length);
    one.forEach((arr, i) => expectExact(`result ${i}`, three[i], arr));
  });
});
