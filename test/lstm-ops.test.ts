// The recurrent ops on the CPU device: the LSTM cell (lstmCellForward/Backward), the sigmoid
// (binary) cross-entropy and the ignored label (-1) of the softmax cross-entropy.
//   - forwards against float64 references written here, evaluated on the very float32 values
//     the tensors hold; several shapes, B = 1 and H = 1 included;
//   - backwards against the float64 formulas and against float64 central finite differences
//     of the reference forward of a scalar objective, for one cell and for a chain of cells
//     with the cell state carried from step to step;
//   - argument errors that name the argument; results that do not depend on the thread count.
// Tolerances as test/ops.test.ts: 1e-5 relative for forwards (a few float32 roundings and the
// few-ulp exp/tanh polynomials), 1e-4 for analytic gradients against finite differences, with
// floors at the scale of the terms so that values that cancel to ~0 are judged on absolute
// error. A wrong formula (a missing factor, 1 - y instead of 1 - y^2) is off by >= 1e-2.
import { Device } from '../ts/device';
import { native, NativeTensor } from '../ts/native';
import * as tsOps from '../ts/ops';
import { Random } from '../ts/random';
import { Stream } from '../ts/stream';
import { Arena, Tensor } from '../ts/tensor';
import * as ref from './helpers/reference';
import { expectClose, expectExact } from './helpers/reference';
import { cpuTensors } from './helpers/native-tensors';
import { expectThrows } from './helpers/errors';

const FWD_TOL = 1e-5;
const GRAD_TOL = 1e-4;
const f32 = Math.fround;

const stream = new native.Stream('cpu');
const ops = native.ops;

// ---- tensor helpers ------------------------------------------------------------------------

const { track, upload, uploadInt, filled, read } = cpuTensors(stream);

// ---- assertions ----------------------------------------------------------------------------

/** Analytic gradient against a numeric one, floor 1e-2 of the numeric gradient's scale. */
function expectGrad(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol = GRAD_TOL): void {
  expect(ref.maxAbs(want)).toBeGreaterThan(0); // a vacuous all-zero gradient proves nothing
  expectClose(what, got, want, tol, 1e-2 * ref.maxAbs(want));
}

// ---- float64 references --------------------------------------------------------------------

function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

interface CellForward {
  /** σ(i), σ(f), tanh(g), σ(o) in blocks, [B, 4H] */
  act: Float64Array;
  c: Float64Array;
  h: Float64Array;
}

/** One LSTM step from pre-activations `pre` [B, 4H] (blocks i, f, g, o) and cPrev [B, H]. */
function cellForward(pre: ArrayLike<number>, cPrev: ArrayLike<number>, B: number, H: number): CellForward {
  const act = new Float64Array(B * 4 * H),
    c = new Float64Array(B * H),
    h = new Float64Array(B * H);
  for (let r = 0; r < B; r++) {
    for (let k = 0; k < 4 * H; k++) {
      const x = pre[r * 4 * H + k];
      act[r * 4 * H + k] = k >= 2 * H && k < 3 * H ? Math.tanh(x) : sigmoid(x);
    }
    for (let j = 0; j < H; j++) {
      const a = r * 4 * H;
      const i = act[a + j],
        f = act[a + H + j],
        g = act[a + 2 * H + j],
        o = act[a + 3 * H + j];
      c[r * H + j] = f * cPrev[r * H + j] + i * g;
      h[r * H + j] = o * Math.tanh(c[r * H + j]);
    }
  }
  return { act, c, h };
}

/** The backward formulas of the op's contract, in float64, from the activations. */
function cellBackward(
  act: ArrayLike<number>,
  cPrev: ArrayLike<number>,
  c: ArrayLike<number>,
  dh: ArrayLike<number>,
  dc: ArrayLike<number> | null,
  B: number,
  H: number,
): { dgates: Float64Array; dcPrev: Float64Array } {
  const dgates = new Float64Array(B * 4 * H),
    dcPrev = new Float64Array(B * H);
  for (let r = 0; r < B; r++)
    for (let j = 0; j < H; j++) {
      const a = r * 4 * H,
        e = r * H + j;
      const i = act[a + j],
        f = act[a + H + j],
        g = act[a + 2 * H + j],
        o = act[a + 3 * H + j];
      const tc = Math.tanh(c[e]);
      const dct = (dc ? dc[e] : 0) + dh[e] * o * (1 - tc * tc);
      dgates[a + j] = dct * g * i * (1 - i);
      dgates[a + H + j] = dct * cPrev[e] * f * (1 - f);
      dgates[a + 2 * H + j] = dct * i * (1 - g * g);
      dgates[a + 3 * H + j] = dh[e] * tc * o * (1 - o);
      dcPrev[e] = dct * f;
    }
  return { dgates, dcPrev };
}

/** (1/B) Σ BCE(σ(z), t) in the textbook form -[t log s + (1 - t) log(1 - s)] (moderate |z|). */
function bceTextbook(z: ArrayLike<number>, t: ArrayLike<number>, B: number): number {
  let total = 0;
  for (let k = 0; k < z.length; k++) {
    const s = sigmoid(z[k]);
    total -= t[k] * Math.log(s) + (1 - t[k]) * Math.log(1 - s);
  }
  return total / B;
}

/** The same loss from the logits: max(z, 0) - z t + log(1 + e^-|z|) (any z). */
function bceStable(z: ArrayLike<number>, t: ArrayLike<number>, B: number): number {
  let total = 0;
  for (let k = 0; k < z.length; k++) total += Math.max(z[k], 0) - z[k] * t[k] + Math.log1p(Math.exp(-Math.abs(z[k])));
  return total / B;
}

/** (1/B) Σ over rows whose label is not -1 of -log softmax(z)[label]. */
function softmaxCeIgnoring(z: ArrayLike<number>, labels: ArrayLike<number>, B: number, K: number): number {
  let total = 0;
  for (let r = 0; r < B; r++) {
    if (labels[r] === -1) continue;
    const row = Array.from({ length: K }, (_, k) => z[r * K + k]);
    const m = Math.max(...row);
    const s = row.reduce((acc, v) => acc + Math.exp(v - m), 0);
    total += Math.log(s) - (row[labels[r]] - m);
  }
  return total / B;
}

// ---- the ops, run natively ----------------------------------------------------------------

interface CellInputs {
  pre: Float32Array;
  cPrev: Float32Array;
}

/** Pre-activations of magnitude in [0.1, 3) (gates neither saturated nor linear), random signs. */
function cellInputs(seed: number, B: number, H: number): CellInputs {
  const rng = new Random(seed);
  return { pre: ref.randomArray(rng, B * 4 * H, 0.1, 3), cPrev: ref.randomArray(rng, B * H, 0.1, 2) };
}

async function runForward(x: CellInputs, B: number, H: number) {
  const gates = upload(x.pre, [B, 4 * H]),
    cPrev = upload(x.cPrev, [B, H]);
  const c = filled([B, H]),
    h = filled([B, H]);
  ops.lstmCellForward(stream, gates, cPrev, c, h);
  return { gates, cPrev, c, h, act: await read(gates), cv: await read(c), hv: await read(h) };
}

// =============================================================================================

const SHAPES: Array<[number, number]> = [
  [1, 1],
  [1, 6],
  [4, 1],
  [3, 5],
  [7, 3],
  [2, 17],
];

describe('lstmCellForward', () => {
  test.each(SHAPES)('B = %p, H = %p: gates become their activations, c and h (NaN overwritten)', async (B, H) => {
    const x = cellInputs(1 + B * 31 + H, B, H);
    const got = await runForward(x, B, H);
    const want = cellForward(x.pre, x.cPrev, B, H);
    expectClose('activations', got.act, want.act, FWD_TOL);
    // c = f cPrev + i g may cancel: the floor is the size of its two terms.
    const cFloor = Float64Array.from(want.c, (_, e) => {
      const r = Math.floor(e / H),
        j = e % H,
        a = r * 4 * H;
      return Math.abs(want.act[a + H + j] * x.cPrev[e]) + Math.abs(want.act[a + j] * want.act[a + 2 * H + j]);
    });
    expectClose('c', got.cv, want.c, FWD_TOL, cFloor);
    expectClose('h', got.hv, want.h, FWD_TOL, cFloor);
  });

  test('saturated gates (|pre-activation| up to 100) stay finite and exact', async () => {
    const B = 2,
      H = 4;
    const pre = Float32Array.from({ length: B * 4 * H }, (_, k) => (k % 2 ? -1 : 1) * [100, 30, 12, 0.5][k % 4]);
    const cPrev = Float32Array.from({ length: B * H }, (_, k) => k - 3.5);
    const got = await runForward({ pre, cPrev }, B, H);
    const want = cellForward(pre, cPrev, B, H);
    expectClose('activations', got.act, want.act, FWD_TOL, 1e-30);
    expectClose('c', got.cv, want.c, FWD_TOL);
    expectClose('h', got.hv, want.h, FWD_TOL);
  });

  test('an empty batch (B = 0) is a no-op', async () => {
    const c = filled([0, 3]);
    ops.lstmCellForward(stream, filled([0, 12]), filled([0, 3]), c, filled([0, 3]));
    await stream.synchronize();
    expect((await read(c)).length).toBe(0);
  });
});

// =============================================================================================

describe('lstmCellBackward', () => {
  async function runBackward(B: number, H: number, seed: number, withDc: boolean) {
    const x = cellInputs(seed, B, H);
    const fwd = await runForward(x, B, H);
    const rng = new Random(seed + 1000);
    const dh = ref.randomArray(rng, B * H),
      dc = ref.randomArray(rng, B * H);
    const dgates = filled([B, 4 * H]),
      dcPrev = filled([B, H]);
    ops.lstmCellBackward(stream, fwd.gates, fwd.cPrev, fwd.c, upload(dh, [B, H]), withDc ? upload(dc, [B, H]) : null, dgates, dcPrev);
    return { x, fwd, dh, dc, dgates: await read(dgates), dcPrev: await read(dcPrev) };
  }

  test.each(SHAPES)('B = %p, H = %p: the formulas, and finite differences of h·dh + c·dc', async (B, H) => {
    const r = await runBackward(B, H, 10 + B * 7 + H, true);
    // Against the float64 formulas evaluated on the float32 activations the forward kept.
    const want = cellBackward(r.fwd.act, r.x.cPrev, r.fwd.cv, r.dh, r.dc, B, H);
    expectClose('dgates (formula)', r.dgates, want.dgates, FWD_TOL, 1e-3 * ref.maxAbs(want.dgates));
    expectClose('dcPrev (formula)', r.dcPrev, want.dcPrev, FWD_TOL, 1e-3 * ref.maxAbs(want.dcPrev));
    // Against finite differences of L = Σ dh ⊙ h + Σ dc ⊙ c w.r.t. the pre-activations and cPrev.
    const objective = (pre: ArrayLike<number>, cPrev: ArrayLike<number>) => {
      const y = cellForward(pre, cPrev, B, H);
      return ref.dot(r.dh, y.h) + ref.dot(r.dc, y.c);
    };
    expectGrad(
      'dgates',
      r.dgates,
      ref.numericGrad((p) => objective(p, r.x.cPrev), r.x.pre),
    );
    expectGrad(
      'dcPrev',
      r.dcPrev,
      ref.numericGrad((cp) => objective(r.x.pre, cp), r.x.cPrev),
    );
  });

  test.each([
    [1, 1],
    [3, 5],
  ])('B = %p, H = %p without dc: only h is differentiated', async (B, H) => {
    const r = await runBackward(B, H, 77 + B + H, false);
    const objective = (pre: ArrayLike<number>, cPrev: ArrayLike<number>) => ref.dot(r.dh, cellForward(pre, cPrev, B, H).h);
    expectGrad(
      'dgates',
      r.dgates,
      ref.numericGrad((p) => objective(p, r.x.cPrev), r.x.pre),
    );
    expectGrad(
      'dcPrev',
      r.dcPrev,
      ref.numericGrad((cp) => objective(r.x.pre, cp), r.x.cPrev),
    );
  });

  test('dcPrev written over dc (in place) equals a separate output', async () => {
    const B = 3,
      H = 4;
    const r = await runBackward(B, H, 91, true);
    const dc = upload(r.dc, [B, H]),
      dgates = filled([B, 4 * H]);
    ops.lstmCellBackward(stream, r.fwd.gates, r.fwd.cPrev, r.fwd.c, upload(r.dh, [B, H]), dc, dgates, dc);
    expectExact('dcPrev in place', await read(dc), r.dcPrev);
    expectExact('dgates', await read(dgates), r.dgates);
  });

  // Three steps with the cell state carried, as in truncated BPTT: step t reads c_{t-1}.
  // L = Σ_t wh_t·h_t + wc·c_T; the backward runs the steps in reverse, dcPrev of step t being
  // the dc of step t - 1 (in place), and the first step's dcPrev is dL/dc_0.
  test("a chain of 3 steps with c carried: gradients w.r.t. every step's gates and c_0", async () => {
    const B = 2,
      H = 3,
      T = 3;
    const rng = new Random(123);
    const pres = Array.from({ length: T }, () => ref.randomArray(rng, B * 4 * H, 0.1, 2));
    const c0 = ref.randomArray(rng, B * H, 0.1, 1);
    const wh = Array.from({ length: T }, () => ref.randomArray(rng, B * H));
    const wc = ref.randomArray(rng, B * H);

    const objective = (steps: ArrayLike<number>[], cInit: ArrayLike<number>) => {
      let c: ArrayLike<number> = cInit,
        L = 0;
      for (let t = 0; t < T; t++) {
        const y = cellForward(steps[t], c, B, H);
        L += ref.dot(wh[t], y.h);
        c = y.c;
      }
      return L + ref.dot(wc, c);
    };

    const gates = pres.map((p) => upload(p, [B, 4 * H]));
    const cs = [upload(c0, [B, H]), ...Array.from({ length: T }, () => filled([B, H]))];
    for (let t = 0; t < T; t++) ops.lstmCellForward(stream, gates[t], cs[t], cs[t + 1], filled([B, H]));
    const dc = upload(wc, [B, H]);
    const dgates = Array.from({ length: T }, () => filled([B, 4 * H]));
    for (let t = T - 1; t >= 0; t--) ops.lstmCellBackward(stream, gates[t], cs[t], cs[t + 1], upload(wh[t], [B, H]), dc, dgates[t], dc);

    for (let t = 0; t < T; t++) {
      const g = ref.numericGrad(
        (p) =>
          objective(
            pres.map((q, u) => (u === t ? p : q)),
            c0,
          ),
        pres[t],
      );
      expectGrad(`dgates[${t}]`, await read(dgates[t]), g);
    }
    expectGrad(
      'dc_0',
      await read(dc),
      ref.numericGrad((c) => objective(pres, c), c0),
    );
  });
});

// =============================================================================================

describe('sigmoidCrossEntropyForward / sigmoidCrossEntropyBackward', () => {
  function inputs(seed: number, B: number, K: number, lo = 0.1, hi = 4) {
    const rng = new Random(seed);
    return { z: ref.randomArray(rng, B * K, lo, hi), t: ref.uniformArray(rng, B * K, 0, 1) };
  }

  async function forward(z: Float32Array, t: Float32Array, B: number, K: number) {
    const probs = filled([B, K]),
      loss = filled([1]);
    ops.sigmoidCrossEntropyForward(stream, upload(z, [B, K]), upload(t, [B, K]), probs, loss);
    return { probs, p: await read(probs), l: (await read(loss))[0] };
  }

  test.each([
    [1, 1],
    [1, 8],
    [5, 1],
    [9, 8],
    [13, 33],
  ])('forward [%p, %p]: probs = σ, loss = (1/B) Σ BCE', async (B, K) => {
    const { z, t } = inputs(B * 100 + K, B, K);
    const got = await forward(z, t, B, K);
    expectClose('probs', got.p, Float64Array.from(z, sigmoid), FWD_TOL);
    // The textbook form checks what the loss means; the stable form is what is computed.
    expectClose('loss', [got.l], [bceTextbook(z, t, B)], 1e-6);
    expectClose('loss', [got.l], [bceStable(z, t, B)], 1e-6);
  });

  test('binary targets and logits up to ±100: finite, from the logits (no log of 0)', async () => {
    const z = Float32Array.from([100, -100, 30, -30, 0.5, -17, 88, -88]);
    const t = Float32Array.from([0, 1, 1, 0, 1, 0, 0, 1]);
    const got = await forward(z, t, 2, 4);
    const want = bceStable(z, t, 2);
    expect(want).toBeGreaterThan(100); // the two confidently wrong outputs dominate
    expectClose('loss', [got.l], [want], 1e-6);
    expectClose('probs', got.p, Float64Array.from(z, sigmoid), FWD_TOL, 1e-30);
  });

  test.each([1, 0.25, 3])('backward, scale %p: dlogits = scale (probs - targets), = scale B dL/dz (finite differences)', async (scale) => {
    const B = 6,
      K = 5;
    const { z, t } = inputs(7, B, K);
    const fwd = await forward(z, t, B, K);
    const dlogits = filled([B, K]);
    ops.sigmoidCrossEntropyBackward(stream, fwd.probs, upload(t, [B, K]), dlogits, scale);
    const got = await read(dlogits);
    expectExact(
      'dlogits',
      got,
      Float32Array.from(fwd.p, (p, k) => f32(f32(scale) * f32(p - t[k]))),
    );
    const g = ref.numericGrad((v) => bceStable(v, t, B), z);
    expectGrad(
      'dlogits',
      got,
      Float64Array.from(g, (v) => scale * B * v),
    );
  });

  test('backward in place (dlogits = probs) gives the same result', async () => {
    const B = 4,
      K = 3;
    const { z, t } = inputs(8, B, K);
    const fwd = await forward(z, t, B, K);
    const T = upload(t, [B, K]),
      separate = filled([B, K]);
    ops.sigmoidCrossEntropyBackward(stream, fwd.probs, T, separate, 0.5);
    ops.sigmoidCrossEntropyBackward(stream, fwd.probs, T, fwd.probs, 0.5);
    expectExact('in place', await read(fwd.probs), await read(separate));
  });

  test('an empty batch gives a loss of 0', async () => {
    const loss = filled([1]);
    ops.sigmoidCrossEntropyForward(stream, filled([0, 4]), filled([0, 4]), filled([0, 4]), loss);
    expect((await read(loss))[0]).toBe(0);
  });
});

// =============================================================================================

describe('softmaxCrossEntropy with ignored rows (label -1)', () => {
  const B = 9,
    K = 5;
  const labels = Int32Array.from([2, -1, 0, 4, -1, -1, 1, 3, 2]);
  const logits = ref.randomArray(new Random(31), B * K, 0.1, 3);

  test('forward: every row gets probs; the loss sums the scored rows and divides by all B', async () => {
    const probs = filled([B, K]),
      loss = filled([1]);
    ops.softmaxCrossEntropyForward(stream, upload(logits, [B, K]), uploadInt(labels, [B]), probs, loss);
    expectClose('probs', await read(probs), ref.softmax(logits, B, K), FWD_TOL);
    const want = softmaxCeIgnoring(logits, labels, B, K);
    // Not the mean over the scored rows only (6 of 9): that would be 1.5 times larger.
    expectClose('loss', await read(loss), [want], FWD_TOL);
  });

  test.each([1, 0.5])('backward, scale %p: ignored rows exactly 0, the rest scale dL/dz (finite differences)', async (scale) => {
    const probs = filled([B, K]),
      loss = filled([1]);
    const L = uploadInt(labels, [B]);
    ops.softmaxCrossEntropyForward(stream, upload(logits, [B, K]), L, probs, loss);
    const dlogits = filled([B, K]);
    ops.softmaxCrossEntropyBackward(stream, probs, L, dlogits, scale);
    const got = await read(dlogits);
    for (let r = 0; r < B; r++) if (labels[r] === -1) expectExact(`row ${r}`, got.subarray(r * K, (r + 1) * K), new Float32Array(K));
    const g = ref.numericGrad((z) => softmaxCeIgnoring(z, labels, B, K), logits);
    expectGrad(
      'dlogits',
      got,
      Float64Array.from(g, (v) => scale * v),
    );
  });

  test('every row ignored: loss 0 and a zero gradient', async () => {
    const none = uploadInt(new Int32Array(B).fill(-1), [B]);
    const probs = filled([B, K]),
      loss = filled([1]),
      dlogits = filled([B, K]);
    ops.softmaxCrossEntropyForward(stream, upload(logits, [B, K]), none, probs, loss);
    ops.softmaxCrossEntropyBackward(stream, probs, none, dlogits, 1);
    expectExact('loss', await read(loss), [0]);
    expectExact('dlogits', await read(dlogits), new Float32Array(B * K));
  });

  test('a label of -2 or of K still fails the stream, naming -1 as the only exception', async () => {
    for (const bad of [-2, K]) {
      const s = new native.Stream('cpu');
      const probs = filled([2, K]);
      ops.softmaxCrossEntropyForward(s, upload(logits.subarray(0, 2 * K), [2, K]), uploadInt([0, bad], [2]), probs, filled([1]));
      await expect(s.synchronize()).rejects.toThrow(/softmaxCrossEntropyForward: a label is outside \[0, 5\) and is not -1/);
      expectExact('probs untouched', await read(probs, s), new Float32Array(2 * K).fill(NaN));
    }
  });

  test('oneHot still rejects -1 (a one-hot row needs a class)', async () => {
    const s = new native.Stream('cpu');
    ops.oneHot(s, uploadInt([0, -1], [2]), filled([2, 3]));
    await expect(s.synchronize()).rejects.toThrow(/oneHot: a label is outside \[0, 3\)/);
  });
});

// =============================================================================================

describe('argument errors name the op and the argument', () => {
  const B = 2,
    H = 3;
  const t = () => ({
    gates: filled([B, 4 * H], 0.5),
    cPrev: filled([B, H], 0.5),
    c: filled([B, H]),
    h: filled([B, H]),
    dh: filled([B, H], 0.5),
    dc: filled([B, H], 0.5),
    dgates: filled([B, 4 * H]),
    dcPrev: filled([B, H]),
  });

  test('lstmCellForward', () => {
    const a = t();
    expectThrows(
      () => ops.lstmCellForward(stream, filled([B, 10]), a.cPrev, a.c, a.h),
      'RangeError',
      /^lstmCellForward: 'gates' must have 4H columns \(blocks i, f, g, o of H each\), got shape \[2,10\]$/,
    );
    expectThrows(
      () => ops.lstmCellForward(stream, filled([24]), a.cPrev, a.c, a.h),
      'RangeError',
      /^lstmCellForward: 'gates' must be 2-D, got shape \[24\]$/,
    );
    expectThrows(
      () => ops.lstmCellForward(stream, a.gates, filled([B, 4]), a.c, a.h),
      'RangeError',
      /^lstmCellForward: 'cPrev' must have shape \[2,3\], got \[2,4\]$/,
    );
    expectThrows(
      () => ops.lstmCellForward(stream, a.gates, a.cPrev, filled([3, H]), a.h),
      'RangeError',
      /^lstmCellForward: 'c' must have shape \[2,3\], got \[3,3\]$/,
    );
    expectThrows(
      () => ops.lstmCellForward(stream, a.gates, a.cPrev, a.c, filled([B, 1])),
      'RangeError',
      /^lstmCellForward: 'h' must have shape \[2,3\], got \[2,1\]$/,
    );
    expectThrows(
      () => ops.lstmCellForward(stream, a.gates, a.cPrev, a.cPrev, a.h),
      'RangeError',
      /^lstmCellForward: 'c' and 'cPrev' must not share memory$/,
    );
    expectThrows(
      () => ops.lstmCellForward(stream, a.gates, a.cPrev, a.c, a.cPrev),
      'RangeError',
      /^lstmCellForward: 'h' and 'cPrev' must not share memory$/,
    );
    expectThrows(
      () => ops.lstmCellForward(stream, a.gates, a.cPrev, a.c, a.c),
      'RangeError',
      /^lstmCellForward: 'c' and 'h' must not share memory$/,
    );
    expectThrows(
      () => ops.lstmCellForward(stream, track(new native.Tensor([B, 4 * H], 'int32', 'cpu', 'zeros')), a.cPrev, a.c, a.h),
      'TypeError',
      /^lstmCellForward: 'gates' must be float32, got int32$/,
    );
    expectThrows(() => ops.lstmCellForward(stream, a.gates, a.cPrev, a.c, null as unknown as NativeTensor), 'TypeError', /'h'/);
  });

  test('lstmCellBackward', () => {
    const a = t();
    const call = (o: Partial<ReturnType<typeof t>>) => {
      const x = { ...a, ...o };
      ops.lstmCellBackward(stream, x.gates, x.cPrev, x.c, x.dh, x.dc, x.dgates, x.dcPrev);
    };
    expectThrows(() => call({ gates: filled([B, 7]) }), 'RangeError', /^lstmCellBackward: 'gates' must have 4H columns/);
    expectThrows(() => call({ dh: filled([B, 2]) }), 'RangeError', /^lstmCellBackward: 'dh' must have shape \[2,3\], got \[2,2\]$/);
    expectThrows(() => call({ dc: filled([1, H]) }), 'RangeError', /^lstmCellBackward: 'dc' must have shape \[2,3\], got \[1,3\]$/);
    expectThrows(
      () => call({ dgates: filled([B, H]) }),
      'RangeError',
      /^lstmCellBackward: 'dgates' must have shape \[2,12\], got \[2,3\]$/,
    );
    expectThrows(() => call({ dcPrev: filled([B, 4 * H]) }), 'RangeError', /^lstmCellBackward: 'dcPrev' must have shape \[2,3\]/);
    expectThrows(() => call({ dgates: a.gates }), 'RangeError', /^lstmCellBackward: 'dgates' and 'gates' must not share memory$/);
    expectThrows(() => call({ dcPrev: a.dh }), 'RangeError', /^lstmCellBackward: 'dcPrev' and 'dh' must not share memory$/);
    expectThrows(() => call({ dcPrev: a.cPrev }), 'RangeError', /^lstmCellBackward: 'dcPrev' and 'cPrev' must not share memory$/);
    expectThrows(() => call({ dcPrev: a.c }), 'RangeError', /^lstmCellBackward: 'dcPrev' and 'c' must not share memory$/);
    expectThrows(
      () => call({ dc: track(new native.Tensor([B, H], 'int32', 'cpu', 'zeros')) }),
      'TypeError',
      /^lstmCellBackward: 'dc' must be float32, got int32$/,
    );
    expectThrows(() => call({ dc: 3 as unknown as NativeTensor }), 'TypeError', /lstmCellBackward: 'dc' must be a Tensor or null/);
    expect(() => call({ dc: a.dcPrev })).not.toThrow(); // dcPrev over dc: allowed
  });

  test('sigmoidCrossEntropyForward / Backward', () => {
    const z = filled([3, 4], 0.5),
      tg = filled([3, 4], 0.5),
      p = filled([3, 4]),
      l = filled([1]);
    expectThrows(
      () => ops.sigmoidCrossEntropyForward(stream, z, filled([4, 3]), p, l),
      'RangeError',
      /^sigmoidCrossEntropyForward: 'targets' must have shape \[3,4\], got \[4,3\]$/,
    );
    expectThrows(
      () => ops.sigmoidCrossEntropyForward(stream, z, track(new native.Tensor([3, 4], 'int32', 'cpu', 'zeros')), p, l),
      'TypeError',
      /^sigmoidCrossEntropyForward: 'targets' must be float32, got int32$/,
    );
    expectThrows(
      () => ops.sigmoidCrossEntropyForward(stream, filled([12]), filled([12]), filled([12]), l),
      'RangeError',
      /^sigmoidCrossEntropyForward: 'logits' must be 2-D, got shape \[12\]$/,
    );
    expectThrows(
      () => ops.sigmoidCrossEntropyForward(stream, z, tg, z, l),
      'RangeError',
      /^sigmoidCrossEntropyForward: 'logits' and 'probs' must not share memory$/,
    );
    expectThrows(
      () => ops.sigmoidCrossEntropyForward(stream, z, tg, p, filled([2])),
      'RangeError',
      /^sigmoidCrossEntropyForward: 'loss' must have shape \[1\], got \[2\]$/,
    );
    expectThrows(
      () => ops.sigmoidCrossEntropyBackward(stream, p, tg, filled([3, 5]), 1),
      'RangeError',
      /^sigmoidCrossEntropyBackward: 'dlogits' must have shape \[3,4\], got \[3,5\]$/,
    );
    expectThrows(
      () => ops.sigmoidCrossEntropyBackward(stream, p, tg, p, NaN),
      'RangeError',
      /^sigmoidCrossEntropyBackward: 'scale' must be finite, got nan$/,
    );
  });
});

// =============================================================================================

describe('the ops layer (ts/ops.ts)', () => {
  const device = Device.parse('cpu');
  const s = Stream.default(device);
  let arena: Arena;
  beforeEach(() => {
    arena = new Arena();
  });
  afterEach(() => arena.dispose());

  test("lstmCellForward/Backward and the sigmoid CE give the native ops' results, bit for bit", async () => {
    const B = 3,
      H = 4;
    const ctx = { device, stream: s, arena };
    const x = cellInputs(5, B, H);
    const gates = Tensor.fromArray(x.pre, [B, 4 * H], { device, arena });
    const cPrev = Tensor.fromArray(x.cPrev, [B, H], { device, arena });
    const { c, h } = tsOps.lstmCellForward(ctx, gates, cPrev);
    const native1 = await runForward(x, B, H);
    expectExact('gates', await gates.readFloat32(s), native1.act);
    expectExact('c', await c.readFloat32(s), native1.cv);
    expectExact('h', await h.readFloat32(s), native1.hv);

    const dh = Tensor.fromArray(ref.randomArray(new Random(6), B * H), [B, H], { device, arena });
    const { dgates, dcPrev } = tsOps.lstmCellBackward(ctx, gates, cPrev, c, dh, null);
    const nd = filled([B, 4 * H]),
      ndc = filled([B, H]);
    ops.lstmCellBackward(stream, native1.gates, native1.cPrev, native1.c, dh.handle, null, nd, ndc);
    expectExact('dgates', await dgates.readFloat32(s), await read(nd));
    expectExact('dcPrev', await dcPrev.readFloat32(s), await read(ndc));

    const { z, t } = { z: ref.randomArray(new Random(9), 8, 0.1, 3), t: ref.uniformArray(new Random(10), 8, 0, 1) };
    const logits = Tensor.fromArray(z, [2, 4], { device, arena }),
      targets = Tensor.fromArray(t, [2, 4], { device, arena });
    const { probs, loss } = tsOps.sigmoidCrossEntropy(ctx, logits, targets);
    const np = filled([2, 4]),
      nl = filled([1]);
    ops.sigmoidCrossEntropyForward(stream, logits.handle, targets.handle, np, nl);
    expectExact('probs', await probs.readFloat32(s), await read(np));
    expectExact('loss', await loss.readFloat32(s), await read(nl));
    const d = tsOps.sigmoidCrossEntropyBackward(ctx, probs, targets, 0.5);
    const nd2 = filled([2, 4]);
    ops.sigmoidCrossEntropyBackward(stream, np, targets.handle, nd2, 0.5);
    expectExact('dlogits', await d.readFloat32(s), await read(nd2));
  });
});

// =============================================================================================

describe('results do not depend on the thread count', () => {
  const original = native.threads();
  afterAll(() => native.threads(original));

  // Sizes above the kernels' grains, so that 3 threads really split the rows.
  async function runAll(threads: number): Promise<Float32Array[]> {
    native.threads(threads);
    const rng = new Random(202);
    const out: Float32Array[] = [];
    {
      const B = 6000,
        K = 8;
      const probs = filled([B, K]),
        loss = filled([1]);
      ops.sigmoidCrossEntropyForward(
        stream,
        upload(ref.randomArray(rng, B * K, 0.1, 5), [B, K]),
        upload(ref.uniformArray(rng, B * K, 0, 1), [B, K]),
        probs,
        loss,
      );
      out.push(await read(probs), await read(loss));
    }
    {
      const B = 5000,
        K = 10;
      const labels = Int32Array.from({ length: B }, (_, r) => (r % 4 === 0 ? -1 : r % K));
      const probs = filled([B, K]),
        loss = filled([1]);
      ops.softmaxCrossEntropyForward(stream, upload(ref.randomArray(rng, B * K, 0.1, 3), [B, K]), uploadInt(labels, [B]), probs, loss);
      out.push(await read(loss));
    }
    {
      const B = 700,
        H = 40;
      const gates = upload(ref.randomArray(rng, B * 4 * H, 0.1, 3), [B, 4 * H]),
        cPrev = upload(ref.randomArray(rng, B * H), [B, H]);
      const c = filled([B, H]),
        h = filled([B, H]),
        dg = filled([B, 4 * H]),
        dcp = filled([B, H]);
      ops.lstmCellForward(stream, gates, cPrev, c, h);
      ops.lstmCellBackward(
        stream,
        gates,
        cPrev,
        c,
        upload(ref.randomArray(rng, B * H), [B, H]),
        upload(ref.randomArray(rng, B * H), [B, H]),
        dg,
        dcp,
      );
      out.push(await read(h), await read(dg), await read(dcp));
    }
    return out;
  }

  test('1 thread vs 3 threads: bit-identical losses, probabilities and cell results', async () => {
    const one = await runAll(1);
    const three = await runAll(3);
    expect(three.length).toBe(one.length);
    one.forEach((arr, i) => expectExact(`result ${i}`, three[i], arr));
  });
});
