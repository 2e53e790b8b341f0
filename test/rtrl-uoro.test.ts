// RTRL and UORO (ts/methods/rtrl.ts, ts/methods/uoro.ts) against computations written out here:
// full (untruncated) BPTT in float64 on the test's own arrays (itself checked against finite
// differences of test/helpers/lstm-reference.ts), UORO's one-step recursion from Jacobians taken
// by finite differences, and the errors for what the methods cannot run.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  HostWeights,
  LSTMSequenceModel,
  Random,
  RecurrentTraining,
  RtrlLSTM,
  SGD,
  UoroLSTM,
  hostWindow,
  trainSequences,
  zeroGradients,
} from '../ts';
import { parseSequenceArgs } from '../ts/cli/sequences';
import { lstmWindow } from './helpers/lstm-reference';
import { expectThrows } from './helpers/errors';

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** A symbol sequence: per step ids [B] and labels [B] (-1: not scored), resets. */
interface Sequence {
  B: number;
  ids: number[][];
  labels: number[][];
  resets: boolean[];
}

function randomWeights(rng: Random, I: number, H: number, O: number, scale: number): HostWeights {
  const draw = (n: number) => Float64Array.from({ length: n }, () => rng.uniform(-scale, scale));
  return { inputs: I, hidden: H, outputs: O, W: draw(4 * H * (I + H)), b: draw(4 * H), R: draw(O * H), r: draw(O) };
}

function randomSequence(rng: Random, B: number, T: number, I: number, O: number, resetAt: number[], unscored: number[]): Sequence {
  const ids = Array.from({ length: T }, () => Array.from({ length: B }, () => rng.int(I)));
  const labels = Array.from({ length: T }, (_, t) =>
    Array.from({ length: B }, (_, e) => (unscored.includes(t) || (t + e) % 4 === 3 ? -1 : rng.int(O))),
  );
  return { B, ids, labels, resets: Array.from({ length: T }, (_, t) => resetAt.includes(t)) };
}

/** Steps [from, to) of a sequence as a SymbolWindow (time-major). */
function symbolWindow(s: Sequence, from: number, to: number) {
  const steps = to - from;
  return {
    steps,
    batch: s.B,
    inputs: Int32Array.from(s.ids.slice(from, to).flat()),
    targets: Int32Array.from(s.labels.slice(from, to).flat()),
    resets: s.resets.slice(from, to),
  };
}

/**
 * Full BPTT over the whole sequence from a zero state, written out on arrays: the loss and its
 * gradient w.r.t. W [4H, I+H], b, R, r. `truncate`: nothing flows into the step before (BPTT
 * truncated to one step), the biased gradient UORO must not agree with.
 */
function bptt(w: HostWeights, s: Sequence, truncate = false) {
  const { inputs: I, hidden: H, outputs: O } = w;
  const { B } = s;
  const T = s.ids.length;
  const saved: { xh: number[][]; act: number[][]; cPrev: number[][]; c: number[][]; h: number[][] }[] = [];
  let h = Array.from({ length: B }, () => new Array<number>(H).fill(0));
  let c = Array.from({ length: B }, () => new Array<number>(H).fill(0));
  for (let t = 0; t < T; t++) {
    if (s.resets[t]) {
      h = h.map((row) => row.map(() => 0));
      c = c.map((row) => row.map(() => 0));
    }
    const xh = s.ids[t].map((id, e) => [...Array.from({ length: I }, (_, k) => (k === id ? 1 : 0)), ...h[e]]);
    const act = xh.map((z) =>
      Array.from({ length: 4 * H }, (_, r) => {
        let a = w.b[r];
        for (let k = 0; k < I + H; k++) a += w.W[r * (I + H) + k] * z[k];
        return r >= 2 * H && r < 3 * H ? Math.tanh(a) : sigmoid(a);
      }),
    );
    const cNext = act.map((g, e) => Array.from({ length: H }, (_, u) => g[H + u] * c[e][u] + g[u] * g[2 * H + u]));
    const hNext = act.map((g, e) => Array.from({ length: H }, (_, u) => g[3 * H + u] * Math.tanh(cNext[e][u])));
    saved.push({ xh, act, cPrev: c, c: cNext, h: hNext });
    h = hNext;
    c = cNext;
  }
  const gW = new Float64Array(4 * H * (I + H));
  const gb = new Float64Array(4 * H);
  const gR = new Float64Array(O * H);
  const gr = new Float64Array(O);
  let loss = 0;
  let dh = Array.from({ length: B }, () => new Array<number>(H).fill(0));
  let dc = Array.from({ length: B }, () => new Array<number>(H).fill(0));
  for (let t = T - 1; t >= 0; t--) {
    const st = saved[t];
    if (truncate) {
      dh = dh.map((row) => row.map(() => 0));
      dc = dc.map((row) => row.map(() => 0));
    }
    for (let e = 0; e < B; e++) {
      const label = s.labels[t][e];
      if (label >= 0) {
        const logits = Array.from({ length: O }, (_, o) => w.r[o] + st.h[e].reduce((a, v, j) => a + w.R[o * H + j] * v, 0));
        const m = Math.max(...logits);
        const sum = logits.reduce((a, v) => a + Math.exp(v - m), 0);
        loss += (m + Math.log(sum) - logits[label]) / B;
        for (let o = 0; o < O; o++) {
          const d = (Math.exp(logits[o] - m) / sum - (o === label ? 1 : 0)) / B;
          gr[o] += d;
          for (let j = 0; j < H; j++) {
            gR[o * H + j] += d * st.h[e][j];
            dh[e][j] += d * w.R[o * H + j];
          }
        }
      }
      const g = st.act[e];
      const da = new Array<number>(4 * H).fill(0);
      for (let u = 0; u < H; u++) {
        const tc = Math.tanh(st.c[e][u]);
        const dcu = dc[e][u] + dh[e][u] * g[3 * H + u] * (1 - tc * tc);
        da[3 * H + u] = dh[e][u] * tc * g[3 * H + u] * (1 - g[3 * H + u]);
        da[H + u] = dcu * st.cPrev[e][u] * g[H + u] * (1 - g[H + u]);
        da[u] = dcu * g[2 * H + u] * g[u] * (1 - g[u]);
        da[2 * H + u] = dcu * g[u] * (1 - g[2 * H + u] ** 2);
        dc[e][u] = dcu * g[H + u]; // into c_(t-1)
      }
      for (let r = 0; r < 4 * H; r++) {
        gb[r] += da[r];
        for (let k = 0; k < I + H; k++) gW[r * (I + H) + k] += da[r] * st.xh[e][k];
      }
      for (let j = 0; j < H; j++) {
        let v = 0;
        for (let r = 0; r < 4 * H; r++) v += da[r] * w.W[r * (I + H) + I + j];
        dh[e][j] = v; // into h_(t-1)
      }
      if (s.resets[t]) {
        dh[e].fill(0);
        dc[e].fill(0);
      }
    }
  }
  return { loss, W: gW, b: gb, R: gR, r: gr };
}

/** θ's gradient (4H rows of K = I + H + 1: W's row, then b) as W and b. */
function splitTheta(theta: Float64Array, I: number, H: number) {
  const K = I + H + 1;
  const W = new Float64Array(4 * H * (I + H));
  const b = new Float64Array(4 * H);
  for (let r = 0; r < 4 * H; r++) {
    for (let k = 0; k < I + H; k++) W[r * (I + H) + k] = theta[r * K + k];
    b[r] = theta[r * K + K - 1];
  }
  return { W, b };
}

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

const maxAbs = (a: ArrayLike<number>) => Math.max(...Array.from(a, Math.abs));

describe('RTRL: the exact gradient through the whole history', () => {
  const [I, H, O, B, T] = [4, 3, 3, 2, 12];
  const w = randomWeights(new Random(3), I, H, O, 0.9);
  const seq = randomSequence(new Random(4), B, T, I, O, [7], [0, 1]);
  const ref = bptt(w, seq);

  test("the test's BPTT agrees with finite differences of the float64 forward pass", () => {
    const lossWith = (W: Float64Array, b: Float64Array) =>
      lstmWindow(
        { W, b, Wr: w.R, br: w.r },
        { B, I, H, O },
        {
          xs: seq.ids.map((ids) => Float64Array.from({ length: B * I }, (_, n) => (ids[Math.floor(n / I)] === n % I ? 1 : 0))),
          labels: seq.labels,
          resets: seq.resets,
          h0: new Float64Array(B * H),
          c0: new Float64Array(B * H),
        },
      ).loss;
    expect(lossWith(w.W, w.b)).toBeCloseTo(ref.loss, 12);
    const eps = 1e-6;
    // A recurrent weight of each gate block, input weights and biases.
    for (const k of [I, 1 * (I + H) + I + 1, 5 * (I + H) + I + 2, 8 * (I + H) + 2, 10 * (I + H) + I + 2]) {
      const plus = Float64Array.from(w.W);
      const minus = Float64Array.from(w.W);
      plus[k] += eps;
      minus[k] -= eps;
      expect(Math.abs((lossWith(plus, w.b) - lossWith(minus, w.b)) / (2 * eps) - ref.W[k])).toBeLessThan(1e-8);
    }
    for (const k of [0, 4, 8, 11]) {
      const plus = Float64Array.from(w.b);
      const minus = Float64Array.from(w.b);
      plus[k] += eps;
      minus[k] -= eps;
      expect(Math.abs((lossWith(w.W, plus) - lossWith(w.W, minus)) / (2 * eps) - ref.b[k])).toBeLessThan(1e-8);
    }
  });

  test.each([
    ['one window of 12 steps', [0, 12]],
    ['windows of 3 steps, the sensitivities carried across them', [0, 3, 6, 9, 12]],
    ['windows of 1, 4, 2 and 5 steps', [0, 1, 5, 7, 12]],
  ])('%s: the gradient equals full BPTT to 1e-5', (_name, cuts) => {
    const rtrl = new RtrlLSTM(I, H);
    rtrl.reset(B);
    const grads = zeroGradients(w);
    let loss = 0;
    for (let i = 0; i + 1 < cuts.length; i++) loss += rtrl.window(w, hostWindow(symbolWindow(seq, cuts[i], cuts[i + 1])), grads);
    const core = splitTheta(grads.theta, I, H);
    expect(Math.abs(loss - ref.loss)).toBeLessThan(1e-10);
    expect(maxDiff(core.W, ref.W)).toBeLessThan(1e-5);
    expect(maxDiff(core.b, ref.b)).toBeLessThan(1e-5);
    expect(maxDiff(grads.R, ref.R)).toBeLessThan(1e-5);
    expect(maxDiff(grads.r, ref.r)).toBeLessThan(1e-5);
    expect(maxAbs(ref.W)).toBeGreaterThan(1e-2); // not trivially zero
    // The history matters here: the gradient truncated to one step differs by far more than the tolerance.
    expect(maxDiff(bptt(w, seq, true).W, ref.W)).toBeGreaterThan(1e-3);
  });

  test('one SGD window of the trainer moves every weight by -lr times the float64 gradient', async () => {
    const model = new LSTMSequenceModel({ inputSymbols: I, outputs: O, hidden: H });
    const lr = 0.5;
    const trainer = new RecurrentTraining(model, { method: 'rtrl', optimizer: () => new SGD({ lr }), seed: 5 });
    try {
      const before = await Promise.all(model.parameters().map((p) => p.value.readFloat32()));
      const w0: HostWeights = {
        inputs: I,
        hidden: H,
        outputs: O,
        W: Float64Array.from(before[0]),
        b: Float64Array.from(before[1]),
        R: Float64Array.from(before[2]),
        r: Float64Array.from(before[3]),
      };
      const part = { ...seq, ids: seq.ids.slice(0, 7), labels: seq.labels.slice(0, 7), resets: seq.resets.slice(0, 7) };
      const g = bptt(w0, part);
      const m = await trainer.step(symbolWindow(seq, 0, 7));
      expect(m.loss).toBeCloseTo(g.loss, 5);
      const after = await Promise.all(model.parameters().map((p) => p.value.readFloat32()));
      [g.W, g.b, g.R, g.r].forEach((grad, i) => {
        const expected = Float64Array.from(before[i], (v, n) => v - lr * grad[n]);
        expect(maxDiff(after[i], expected)).toBeLessThan(1e-5);
        expect(maxDiff(after[i], before[i])).toBeGreaterThan(1e-4); // the step moved it
      });
      // The carried state is the float64 forward pass's final state.
      const fw = bptt(w0, part).loss; // (same weights, same steps)
      expect(fw).toBeCloseTo(g.loss, 12);
      const h = await trainer.state!.h.readFloat32();
      expect(h.length).toBe(B * H);
    } finally {
      trainer.dispose();
    }
  });
});

describe('UORO: an unbiased rank-one estimate', () => {
  test('the mean of 3000 seeded estimates is within 5 standard errors of the true gradient in every coordinate', () => {
    const [I, H, O, B, T] = [3, 2, 2, 1, 6];
    const w = randomWeights(new Random(7), I, H, O, 1.2);
    const seq = randomSequence(new Random(8), B, T, I, O, [], []);
    const labelRng = new Random(9);
    seq.labels = seq.labels.map(() => [labelRng.int(O)]); // every step scored
    const ref = bptt(w, seq);
    const truth = Float64Array.from([...ref.W, ...ref.b]);
    const N = 3000;
    const P = truth.length;
    const sum = new Float64Array(P);
    const sumSq = new Float64Array(P);
    for (let seed = 0; seed < N; seed++) {
      const uoro = new UoroLSTM(I, H, UoroLSTM.signsFrom(new Random(1000 + seed)));
      uoro.reset(B);
      const grads = zeroGradients(w);
      uoro.window(w, hostWindow(symbolWindow(seq, 0, T)), grads);
      const core = splitTheta(grads.theta, I, H);
      const est = [...core.W, ...core.b];
      for (let p = 0; p < P; p++) {
        sum[p] += est[p];
        sumSq[p] += est[p] * est[p];
      }
      if (seed === 0) {
        // The read-out is not recurrent: its gradient is exact in every estimate.
        expect(maxDiff(grads.R, ref.R)).toBeLessThan(1e-12);
        expect(maxDiff(grads.r, ref.r)).toBeLessThan(1e-12);
      }
    }
    const mean = sum.map((s) => s / N);
    const stdErr = sumSq.map((s, p) => Math.sqrt((s / N - mean[p] ** 2) / (N - 1)));
    // Per coordinate |mean − truth| ≤ 5 SE: for a normal mean the chance that any of the 40 exceeds it is below 40 · 6e-7.
    const z = mean.map((m, p) => Math.abs(m - truth[p]) / stdErr[p]);
    expect(Math.max(...z)).toBeLessThan(5);
    // The estimates vary (an estimator that returned the truth would pass trivially), and the bound is tight enough to
    // reject the gradient BPTT gives when truncated to one step.
    expect(Math.min(...stdErr)).toBeGreaterThan(0);
    const truncated = bptt(w, seq, true);
    const trunc = [...truncated.W, ...truncated.b];
    expect(Math.max(...mean.map((m, p) => Math.abs(m - trunc[p]) / stdErr[p]))).toBeGreaterThan(5);
  });

  test('two steps of the recursion equal the rule applied to finite-difference Jacobians', () => {
    const [I, H, O] = [2, 1, 2];
    const w = randomWeights(new Random(11), I, H, O, 1);
    const K = I + H + 1;
    const P = 4 * H * K;
    // F(s, θ) of one step for symbol `id`: s = [h, c], θ = 4 rows of [W_x (I), W_h, b].
    const step = (id: number, s: number[], theta: number[]) => {
      const a = [0, 1, 2, 3].map((r) => theta[r * K + id] + theta[r * K + I] * s[0] + theta[r * K + I + 1]);
      const c = sigmoid(a[1]) * s[1] + sigmoid(a[0]) * Math.tanh(a[2]);
      return [sigmoid(a[3]) * Math.tanh(c), c];
    };
    const theta0 = [0, 1, 2, 3].flatMap((r) => [...Array.from({ length: I + H }, (_, k) => w.W[r * (I + H) + k]), w.b[r]]);
    const eps = 1e-6;
    const jacS = (id: number, s: number[]) =>
      [0, 1].map((q) => {
        const up = [...s];
        const dn = [...s];
        up[q] += eps;
        dn[q] -= eps;
        const f1 = step(id, up, theta0);
        const f0 = step(id, dn, theta0);
        return [0, 1].map((o) => (f1[o] - f0[o]) / (2 * eps)); // column q
      });
    const jacTheta = (id: number, s: number[]) =>
      Array.from({ length: P }, (_, p) => {
        const up = [...theta0];
        const dn = [...theta0];
        up[p] += eps;
        dn[p] -= eps;
        const f1 = step(id, s, up);
        const f0 = step(id, s, dn);
        return [0, 1].map((o) => (f1[o] - f0[o]) / (2 * eps)); // column p
      });
    const norm = (v: number[]) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
    const signs = [1, -1, -1, -1];
    const ids = [1, 0];
    const labels = [1, 0];
    // By hand: from s0 (a given state: s̃ = 0, θ̃ = 0), two steps, the gradient Σ_t (∂L_t/∂h_t · s̃_h) θ̃.
    let s = [0.3, -0.4];
    let sT = [0, 0];
    let thT = new Array<number>(P).fill(0);
    const grad = new Array<number>(P).fill(0);
    for (let t = 0; t < 2; t++) {
      const Js = jacS(ids[t], s);
      const Jt = jacTheta(ids[t], s);
      const sPrime = [0, 1].map((o) => Js[0][o] * sT[0] + Js[1][o] * sT[1]);
      const nu = [signs[2 * t], signs[2 * t + 1]];
      const thPrime = Jt.map((col) => nu[0] * col[0] + nu[1] * col[1]);
      const rho0 = Math.sqrt((norm(thT) + 1e-7) / (norm(sPrime) + 1e-7));
      const rho1 = Math.sqrt((norm(thPrime) + 1e-7) / (norm(nu) + 1e-7));
      sT = [0, 1].map((q) => rho0 * sPrime[q] + rho1 * nu[q]);
      thT = thT.map((v, p) => v / rho0 + thPrime[p] / rho1);
      s = step(ids[t], s, theta0);
      const logits = [0, 1].map((o) => w.r[o] + w.R[o] * s[0]);
      const m = Math.max(...logits);
      const z = logits.reduce((a, v) => a + Math.exp(v - m), 0);
      const dh = [0, 1].reduce((a, o) => a + (Math.exp(logits[o] - m) / z - (o === labels[t] ? 1 : 0)) * w.R[o], 0);
      for (let p = 0; p < P; p++) grad[p] += dh * sT[0] * thT[p];
    }
    let drawn = 0;
    const uoro = new UoroLSTM(I, H, () => signs[drawn++]);
    uoro.setState(Float64Array.of(0.3), Float64Array.of(-0.4));
    const grads = zeroGradients(w);
    uoro.window(
      w,
      {
        inputs: [Int32Array.of(ids[0]), Int32Array.of(ids[1])],
        targets: [Int32Array.of(labels[0]), Int32Array.of(labels[1])],
        resets: [false, false],
      },
      grads,
    );
    expect(drawn).toBe(4);
    expect(maxDiff(grads.theta, grad)).toBeLessThan(1e-6);
    expect(maxAbs(grad)).toBeGreaterThan(1e-2);
    expect(uoro.h[0]).toBeCloseTo(s[0], 12);
    expect(uoro.c[0]).toBeCloseTo(s[1], 12);
  });
});

describe('through trainSequences (Copy)', () => {
  test.each([
    ['uoro', 8],
    ['rtrl', 4],
  ] as const)('%s through trainSequences (LSTM %d) learns: the first Copy level is solved', async (method, hidden) => {
    const bits: number[] = [];
    const score = await trainSequences({
      task: 'copy',
      method,
      truncation: 4,
      steps: 400,
      hidden,
      batch: 8,
      lr: 1e-2,
      seed: 0,
      logEvery: 50,
      onProgress: (p) => bits.push(p.bits),
    });
    expect(score.method).toBe(method);
    expect(score.windows).toBe(400);
    expect(score.solved!.level).toBeGreaterThanOrEqual(0);
    expect(bits[bits.length - 1]).toBeLessThan(bits[0]);
  });
  test('the text task runs its budget exactly (windows are counted when enqueued, as the device methods count them)', async () => {
    const file = path.join(os.tmpdir(), `rtrl-uoro-text-${process.pid}.txt`);
    const rng = new Random(2);
    fs.writeFileSync(file, Array.from({ length: 6000 }, () => 'abcde \n'[rng.int(7)]).join(''));
    try {
      for (const method of ['rtrl', 'uoro'] as const) {
        const score = await trainSequences({
          task: 'text',
          textFile: file,
          method,
          truncation: 8,
          steps: 20,
          hidden: 4,
          batch: 4,
          validateEvery: 10,
        });
        expect(score.windows).toBe(20);
        expect(score.testBits).toBeLessThan(Math.log2(7) + 0.5);
      }
    } finally {
      fs.unlinkSync(file);
    }
  });
});

describe('the carried state', () => {
  test('setState() and resetState() before a window, even one enqueued behind another, set the state it starts from', async () => {
    const [I, H, O, B, T] = [4, 3, 3, 2, 4];
    const seq = randomSequence(new Random(12), B, T, I, O, [], []);
    const h0 = Float32Array.from([0.5, -0.2, 0.1, 0.3, 0, -0.4]);
    const c0 = Float32Array.from([-0.6, 0.4, 0.2, 0.1, 0.7, -0.3]);
    for (const method of ['rtrl', 'uoro'] as const) {
      const model = new LSTMSequenceModel({ inputSymbols: I, outputs: O, hidden: H });
      // A learning rate too small to change a float32 weight: every window runs with the initial weights.
      const trainer = new RecurrentTraining(model, { method, optimizer: () => new SGD({ lr: 1e-30 }), seed: 1 });
      try {
        const [W, b, Wr, br] = await Promise.all(model.parameters().map((p) => p.value.readFloat32()));
        const lossFrom = (h: ArrayLike<number>, c: ArrayLike<number>) =>
          lstmWindow(
            { W, b, Wr, br },
            { B, I, H, O },
            {
              xs: seq.ids.map((ids) => Float64Array.from({ length: B * I }, (_, n) => (ids[Math.floor(n / I)] === n % I ? 1 : 0))),
              labels: seq.labels,
              h0: h,
              c0: c,
            },
          );
        trainer.setState(h0, c0, B);
        const first = trainer.step(symbolWindow(seq, 0, T));
        trainer.resetState(); // after the first window's step(), before it has run
        const second = trainer.step(symbolWindow(seq, 0, T));
        const [m1, m2] = await Promise.all([first, second]);
        const fromGiven = lossFrom(h0, c0);
        const fromZero = lossFrom(new Float64Array(B * H), new Float64Array(B * H));
        expect(Math.abs(fromGiven.loss - fromZero.loss)).toBeGreaterThan(1e-3); // the start matters here
        expect(m1.loss).toBeCloseTo(fromGiven.loss, 5);
        expect(m2.loss).toBeCloseTo(fromZero.loss, 5);
        expect(maxDiff(await trainer.state!.h.readFloat32(), fromZero.h)).toBeLessThan(1e-6);
      } finally {
        trainer.dispose();
      }
    }
  });
});

describe('errors', () => {
  test('RTRL on a core too large names the size and the cost', () => {
    const model = new LSTMSequenceModel({ inputSymbols: 10, outputs: 8, hidden: 64 });
    expectThrows(
      () => new RecurrentTraining(model, { method: 'rtrl', optimizer: () => new SGD({ lr: 0.1 }) }),
      'RangeError',
      /RecurrentTraining: RTRL's cost grows as the fourth power.*64 units \(10 inputs\).*P = 19,200 core weights.*2H·P = 2,457,600 sensitivities.*hidden <= 32.*'uoro'/,
    );
    model.dispose();
    expect(() => new RtrlLSTM(10, 33)).toThrow(/33 units/);
  });

  test('bad combinations are refused before training', async () => {
    const model = new LSTMSequenceModel({ inputSymbols: 10, outputs: 8, hidden: 8 });
    expectThrows(
      () => new RecurrentTraining(model, { method: 'uoro', optimizer: () => new SGD({ lr: 0.1 }), synthesizer: {} }),
      'RangeError',
      /'synthesizer' is given but method 'uoro' uses none/,
    );
    expectThrows(
      () => new RecurrentTraining(model, { method: 'rtrl', optimizer: () => new SGD({ lr: 0.1 }), auxWeight: 1 }),
      'RangeError',
      /'auxWeight' is given but method 'rtrl'/,
    );
    expectThrows(
      () => new RecurrentTraining(model, { method: 'rtl' as never, optimizer: () => new SGD({ lr: 0.1 }) }),
      'TypeError',
      /'method' must be one of 'bptt', 'dni', 'dni-aux', 'rtrl', 'uoro', got string rtl/,
    );
    const trainer = new RecurrentTraining(model, { method: 'uoro', optimizer: () => new SGD({ lr: 0.1 }) });
    // Another batch behind a pending window: refused as when the state is on the device (not silently reset).
    const window = (batch: number) => ({
      steps: 2,
      batch,
      inputs: new Int32Array(2 * batch),
      targets: new Int32Array(2 * batch),
      resets: [false, false],
    });
    const pending = trainer.step(window(3));
    expectThrows(
      () => trainer.step(window(4)),
      'RangeError',
      /'window.batch' is 4, but the carried state has 3 rows \(call resetState\(\)/,
    );
    await pending;
    trainer.resetState();
    await trainer.step(window(4));
    const file = path.join(os.tmpdir(), `rtrl-uoro-${process.pid}.ckpt`);
    await expect(trainer.save(file)).rejects.toThrow(/method 'uoro' has no checkpoints/);
    expect(fs.existsSync(file)).toBe(false);
    trainer.dispose();
    await expect(
      trainSequences({ task: 'copy', method: 'rtrl', truncation: 3, steps: 10, hidden: 8, checkpoint: { path: file, every: 5 } }),
    ).rejects.toThrow(/'checkpoint' is given but method 'rtrl' has no checkpoints/);
    await expect(
      trainSequences({ task: 'copy', method: 'uoro', truncation: 3, steps: 10, hidden: 8, synthesizerLr: 1e-3 }),
    ).rejects.toThrow(/'synthesizerLr' is given but method 'uoro' uses no synthesizer/);
  });

  test('the command line refuses RTRL at the default size, checkpoints and DNI flags', () => {
    expect(() => parseSequenceArgs(['--task', 'copy', '--method', 'rtrl', '--truncation', '3', '--steps', '10'])).toThrow(
      /--method rtrl runs at --hidden 32 or less, got 128 .*use --method uoro/,
    );
    expect(parseSequenceArgs(['--task', 'copy', '--method', 'rtrl', '--hidden', '8', '--truncation', '3', '--steps', '10']).method).toBe(
      'rtrl',
    );
    expect(() =>
      parseSequenceArgs(['--task', 'copy', '--method', 'uoro', '--truncation', '3', '--steps', '10', '--checkpoint', 'x.ckpt']),
    ).toThrow(/--checkpoint is not available with --method uoro/);
    expect(() =>
      parseSequenceArgs(['--task', 'copy', '--method', 'uoro', '--truncation', '3', '--steps', '10', '--discount', '0.5']),
    ).toThrow(/--discount applies to dni and dni-aux only \(uoro has no synthesizer\)/);
    expect(() => parseSequenceArgs(['--task', 'copy', '--method', 'rtlr', '--truncation', '3', '--steps', '10'])).toThrow(
      /--method must be bptt, dni, dni-aux, rtrl, uoro/,
    );
  });
});
