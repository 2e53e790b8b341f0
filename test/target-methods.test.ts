// Difference target propagation (ts/methods/target-propagation.ts) against float64 hand
// computations on tiny networks (the rules written out on arrays below, sharing no code with
// ts/methods/): the targets with exact inverses, one full update (model and inverses, the
// inverses' noise redrawn from the seed), bad models refused before training, a checkpoint
// that resumes exactly, and a short seeded run whose loss falls.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  Adam,
  Arena,
  BatchNorm1d,
  Dataset,
  Device,
  Linear,
  Random,
  ReLU,
  SGD,
  Sequential,
  Tanh,
  Tensor,
  Trainer,
  targetPropagation,
} from '../ts';
import type { StepContext } from '../ts';
import * as ref from './helpers/reference';

const cpu = Device.cpu();
const B = 4;
const lr = 0.1;

async function read(trainer: Trainer, t: Tensor): Promise<Float64Array> {
  return Float64Array.from(await t.readFloat32(trainer.stream));
}

// ---- float64 helpers ------------------------------------------------------------------------

/** x [B, in] · Wᵀ + b */
const linear = (x: ArrayLike<number>, W: ArrayLike<number>, b: ArrayLike<number>, inF: number, outF: number) =>
  ref.addBias(ref.gemm(false, true, { M: B, N: outF, K: inF }, 1, x, W, 0, null), b, B, outF);
/** dy [B, out] · W [out, in] */
const down = (dy: ArrayLike<number>, W: ArrayLike<number>, inF: number, outF: number) =>
  ref.gemm(false, false, { M: B, N: inF, K: outF }, 1, dy, W, 0, null);
const weightGrad = (dy: ArrayLike<number>, x: ArrayLike<number>, inF: number, outF: number) =>
  ref.gemm(true, false, { M: outF, N: inF, K: B }, 1, dy, x, 0, null);
const sgd = (p: Float64Array, g: ArrayLike<number>) => p.map((v, i) => v - lr * g[i]);
const tanhBack = (dy: ArrayLike<number>, y: Float64Array) => y.map((v, k) => dy[k] * (1 - v * v));
const add = (a: ArrayLike<number>, b: ArrayLike<number>, s = 1) => Float64Array.from(a, (v, i) => v + s * b[i]);
/** the gradient of (1/B) Σ_b ||h_b − t_b||² */
const localGrad = (h: ArrayLike<number>, t: ArrayLike<number>) => Float64Array.from(h, (v, i) => (2 * (v - t[i])) / B);
function ceGrad(logits: Float64Array, labels: ArrayLike<number>, classes: number): Float64Array {
  const p = ref.softmax(logits, B, classes);
  return p.map((v, k) => (v - (k % classes === labels[Math.floor(k / classes)] ? 1 : 0)) / B);
}

/** The inverse of an n×n matrix (Gauss-Jordan with partial pivoting), float64. */
function invert(W: ArrayLike<number>, n: number): Float64Array {
  const a = Array.from({ length: n }, (_, r) => [
    ...Array.from({ length: n }, (_, c) => W[r * n + c]),
    ...Array.from({ length: n }, (_, c) => (r === c ? 1 : 0)),
  ]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(a[r][c]) > Math.abs(a[p][c])) p = r;
    [a[c], a[p]] = [a[p], a[c]];
    const d = a[c][c];
    a[c] = a[c].map((v) => v / d);
    for (let r = 0; r < n; r++) if (r !== c) a[r] = a[r].map((v, j) => v - a[r][c] * a[c][j]);
  }
  return Float64Array.from(a.flatMap((row) => row.slice(n)));
}

function expectUpdate(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  ref.expectClose(what, got, want, 1e-4, 1e-5);
}

describe('the targets', () => {
  test('with exact inverses, the difference-corrected target below the top hidden layer maps onto its gradient-step target', async () => {
    // A linear network 3 → 4 → 4 → 2 (blocks without activations, so that g_1 = f_1⁻¹ is a Linear).
    const rng = new Random(61);
    const net = targetPropagation(new Sequential([new Linear(3, 4), new Linear(4, 4), new Linear(4, 2)]), { targetStep: 0.3, seed: 1 });
    const trainer = new Trainer(net, { device: cpu, optimizer: new SGD({ lr }), loss: 'mse', seed: 2 });
    expect(net.blocks.map((b) => [b.start, b.end, b.width])).toEqual([
      [0, 1, 4],
      [1, 2, 4],
      [2, 3, 2],
    ]);
    expect(net.inverses.map((g) => g?.linear.name)).toEqual([undefined, 'Linear(4→4)']);
    const [W0, b0, W1, b1, W2, b2] = await Promise.all(net.parameters().map((p) => read(trainer, p.value)));
    // g_1(h) = W1⁻¹(h − b1): the exact inverse of f_1(h) = W1·h + b1.
    const V = invert(W1, 4);
    const c = ref.gemm(false, false, { M: 4, N: 1, K: 4 }, -1, V, b1, 0, null);
    await net.inverses[1]!.linear.weight!.assign(Float32Array.from(V));
    await net.inverses[1]!.linear.bias!.assign(Float32Array.from(c));

    const x = ref.randomArray(rng, B * 3);
    const y = ref.randomArray(rng, B * 2);
    const h0 = linear(x, W0, b0, 3, 4);
    const h1 = linear(h0, W1, b1, 4, 4);
    const out = linear(h1, W2, b2, 4, 2);
    const e = out.map((o, k) => (2 * (o - y[k])) / out.length); // d(mean squared error)/d(out)
    const arena = new Arena();
    const ctx: StepContext = { device: cpu, stream: trainer.stream, training: true, arena };
    const f = net.forwardLayers(Tensor.fromArray(x, [B, 3], { device: cpu, arena }), ctx);
    const targets = await Promise.all(
      net.targets(f, Tensor.fromArray(Float32Array.from(e), [B, 2], { device: cpu, arena }), ctx).map((t) => read(trainer, t)),
    );
    arena.dispose();

    // Top hidden layer: a step of 0.3 on each example's own loss (whose gradient is B times the mean's).
    const step = add(h1, down(e, W2, 4, 2), -0.3 * B);
    ref.expectClose('ĥ_1 (gradient step)', targets[1], step, 1e-5, 1e-6);
    // Below it: ĥ_0 = h_0 + g(ĥ_1) − g(h_1), which with g = f⁻¹ is f⁻¹(ĥ_1): f_1(ĥ_0) = ĥ_1.
    ref.expectClose('f_1(ĥ_0)', linear(targets[0], W1, b1, 4, 4), step, 1e-4, 1e-5);
    ref.expectClose('ĥ_0 = f⁻¹(ĥ_1)', targets[0], linear(step, V, c, 4, 4), 1e-4, 1e-5);
    trainer.dispose();
  });
});

describe('one update equals a float64 hand computation', () => {
  test('Linear → Tanh ×3 → Linear, cross-entropy: local losses to the targets, the output layer by its true gradient, the inverses on noisy reconstructions', async () => {
    const rng = new Random(62);
    const model = new Sequential([
      new Linear(3, 5),
      new Tanh(),
      new Linear(5, 4),
      new Tanh(),
      new Linear(4, 3),
      new Tanh(),
      new Linear(3, 2),
    ]);
    const eta = 0.4;
    const sigma = 0.2;
    const net = targetPropagation(model, { targetStep: eta, noise: sigma, seed: 9 });
    const trainer = new Trainer(net, { device: cpu, optimizer: new SGD({ lr }), seed: 3 });
    expect(net.inverses.map((g) => g && `${g.linear.name} ${g.activation?.name}`)).toEqual([
      undefined,
      'Linear(4→5) Tanh',
      'Linear(3→4) Tanh',
    ]);
    const params = [...net.parameters(), ...net.inverseParameters()];
    const before = await Promise.all(params.map((p) => read(trainer, p.value)));
    const [W0, b0, W1, b1, W2, b2, W3, b3, V1, c1, V2, c2] = before;
    const x = ref.randomArray(rng, B * 3);
    const labels = ref.randomLabels(rng, B, 2);
    await trainer.fit(new Dataset('batch', x, labels, 3, 2), { steps: 1, batchSize: B, shuffle: false });
    const after = await Promise.all(params.map((p) => read(trainer, p.value)));

    const h0 = ref.activation('tanh', linear(x, W0, b0, 3, 5));
    const h1 = ref.activation('tanh', linear(h0, W1, b1, 5, 4));
    const h2 = ref.activation('tanh', linear(h1, W2, b2, 4, 3));
    const out = linear(h2, W3, b3, 3, 2);
    const e = ceGrad(out, labels, 2);
    const g1 = (h: ArrayLike<number>) => ref.activation('tanh', linear(h, V1, c1, 4, 5)); // h_1 → h_0
    const g2 = (h: ArrayLike<number>) => ref.activation('tanh', linear(h, V2, c2, 3, 4)); // h_2 → h_1
    // Targets: a step of η̂ on each example's loss (B times the mean's gradient), then differences.
    const t2 = add(h2, down(e, W3, 3, 2), -eta * B);
    const t1 = add(add(h1, g2(t2)), g2(h2), -1);
    const t0 = add(add(h0, g1(t1)), g1(h1), -1);
    const d2 = tanhBack(localGrad(h2, t2), h2);
    const d1 = tanhBack(localGrad(h1, t1), h1);
    const d0 = tanhBack(localGrad(h0, t0), h0);
    // The noise: σ·N(0, 1) from the seed, drawn for g_1's input (h_0) then g_2's (h_1), row-major, as float32.
    const noise = new Random(9);
    const draw = (n: number) => Float64Array.from({ length: n }, () => Math.fround(sigma * noise.normal()));
    const hn0 = add(h0, draw(B * 5));
    const hn1 = add(h1, draw(B * 4));
    // g_1(f_1(h̃_0)) against h̃_0, g_2(f_2(h̃_1)) against h̃_1; gradients into V, c only.
    const a1 = ref.activation('tanh', linear(hn0, W1, b1, 5, 4));
    const r1 = g1(a1);
    const dr1 = tanhBack(localGrad(r1, hn0), r1);
    const a2 = ref.activation('tanh', linear(hn1, W2, b2, 4, 3));
    const r2 = g2(a2);
    const dr2 = tanhBack(localGrad(r2, hn1), r2);
    const want = [
      sgd(W0, weightGrad(d0, x, 3, 5)),
      sgd(b0, ref.columnSums(d0, B, 5)),
      sgd(W1, weightGrad(d1, h0, 5, 4)),
      sgd(b1, ref.columnSums(d1, B, 4)),
      sgd(W2, weightGrad(d2, h1, 4, 3)),
      sgd(b2, ref.columnSums(d2, B, 3)),
      sgd(W3, weightGrad(e, h2, 3, 2)),
      sgd(b3, ref.columnSums(e, B, 2)),
      sgd(V1, weightGrad(dr1, a1, 4, 5)),
      sgd(c1, ref.columnSums(dr1, B, 5)),
      sgd(V2, weightGrad(dr2, a2, 3, 4)),
      sgd(c2, ref.columnSums(dr2, B, 4)),
    ];
    want.forEach((w, i) => expectUpdate(`parameter ${i} (${i < 8 ? 'model' : 'inverse'})`, after[i], w));
    // Every parameter moved: the check is not satisfied by an update that does nothing.
    want.forEach((w, i) => expect(ref.maxAbs(w.map((v, k) => v - before[i][k]))).toBeGreaterThan(1e-6));
    // The lower hidden layers' update is not backprop's.
    const bp1 = tanhBack(down(tanhBack(down(e, W3, 3, 2), h2), W2, 4, 3), h1);
    expect(ref.maxAbs(weightGrad(bp1, h0, 5, 4).map((g, i) => g - weightGrad(d1, h0, 5, 4)[i]))).toBeGreaterThan(1e-4);
    trainer.dispose();
  });

  test("at the default η̂ = 1/2 the top hidden layer gets exactly backprop's gradient", async () => {
    const rng = new Random(63);
    const net = targetPropagation(new Sequential([new Linear(3, 4), new Tanh(), new Linear(4, 2)]));
    expect([net.targetStep, net.noise]).toEqual([0.5, 0.1]);
    const trainer = new Trainer(net, { device: cpu, optimizer: new SGD({ lr }), seed: 4 });
    const [W0, b0, W1, b1] = await Promise.all(net.parameters().map((p) => read(trainer, p.value)));
    const x = ref.randomArray(rng, B * 3);
    const labels = ref.randomLabels(rng, B, 2);
    await trainer.fit(new Dataset('batch', x, labels, 3, 2), { steps: 1, batchSize: B, shuffle: false });
    const after = await Promise.all(net.parameters().map((p) => read(trainer, p.value)));
    const h0 = ref.activation('tanh', linear(x, W0, b0, 3, 4));
    const e = ceGrad(linear(h0, W1, b1, 4, 2), labels, 2);
    const d0 = tanhBack(down(e, W1, 4, 2), h0); // backprop
    expectUpdate('W0', after[0], sgd(W0, weightGrad(d0, x, 3, 4)));
    expectUpdate('b0', after[1], sgd(b0, ref.columnSums(d0, B, 4)));
    trainer.dispose();
  });
});

describe('a model or option DTP does not cover is an error naming the problem, before training', () => {
  test('models', () => {
    expect(() => targetPropagation(new Sequential([new Linear(3, 4), new BatchNorm1d(4), new Tanh(), new Linear(4, 2)]))).toThrow(
      /targetPropagation: layer 1 \(BatchNorm1d\(4\)\) is not a Linear where a block starts \(no rule for this module\): difference target propagation/,
    );
    expect(() => targetPropagation(new Sequential([new Linear(3, 4), new Tanh(), new ReLU(), new Linear(4, 2)]))).toThrow(
      /layer 2 \(ReLU\) is not a Linear where a block starts \(two activations in a row\)/,
    );
    expect(() => targetPropagation(new Sequential([new Tanh(), new Linear(3, 2)]))).toThrow(/layer 0 \(Tanh\) is not a Linear/);
    expect(() => targetPropagation(new Sequential([new Linear(3, 2), new Tanh()]))).toThrow(/the model is one block .* no hidden layer/);
    expect(() => targetPropagation(new Linear(3, 2) as never)).toThrow(/targetPropagation: 'model' must be a Sequential/);
  });

  test('options', () => {
    const m = () => new Sequential([new Linear(3, 4), new Tanh(), new Linear(4, 2)]);
    expect(() => targetPropagation(m(), { targetStep: 0 })).toThrow(/'targetStep' must be a finite number > 0, got 0/);
    expect(() => targetPropagation(m(), { noise: -1 })).toThrow(/'noise' must be a finite number >= 0, got -1/);
    expect(() => targetPropagation(m(), { noise: NaN })).toThrow(/'noise' must be a finite number >= 0, got NaN/);
    expect(() => targetPropagation(m(), { seed: 0.5 })).toThrow(/'seed' must be an integer, got 0.5/);
    expect(() => targetPropagation(m(), { step: 1 } as never)).toThrow(/step/);
  });

  test('graph capture is refused, saying why', async () => {
    const net = targetPropagation(new Sequential([new Linear(3, 4), new Tanh(), new Linear(4, 2)]));
    const trainer = new Trainer(net, { device: cpu, optimizer: new SGD({ lr }), seed: 1 });
    const rng = new Random(3);
    const data = new Dataset('d', ref.randomArray(rng, 8 * 3), ref.randomLabels(rng, 8, 2), 3, 2);
    await expect(trainer.fit(data, { steps: 1, batchSize: 4, graph: true })).rejects.toThrow(
      /draws its inverses' training noise on the host/,
    );
    trainer.dispose();
  });
});

describe('checkpoints', () => {
  test('a run loaded from a checkpoint goes on as the saved one does (inverses and noise generator saved)', async () => {
    const rng = new Random(71);
    const data = new Dataset('d', ref.randomArray(rng, 32 * 4), ref.randomLabels(rng, 32, 3), 4, 3);
    const make = (seed: number) => {
      const net = targetPropagation(new Sequential([new Linear(4, 6), new Tanh(), new Linear(6, 5), new Tanh(), new Linear(5, 3)]));
      return { net, trainer: new Trainer(net, { device: cpu, optimizer: () => new Adam({ lr: 0.01 }), seed }) };
    };
    type Made = ReturnType<typeof make>;
    const all = (m: Made) => Promise.all([...m.net.parameters(), ...m.net.inverseParameters()].map((p) => read(m.trainer, p.value)));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-dtp-'));
    try {
      const a = make(1);
      await a.trainer.fit(data, { steps: 2, batchSize: 8, shuffle: false });
      const file = path.join(dir, 'dtp.ckpt');
      await a.trainer.save(file);
      // Another seed: other initial weights, inverses and noise, all replaced by the checkpoint's.
      const b = make(5);
      await b.trainer.load(file);
      const c = make(5); // the same, not loaded: the control that the load changed something
      for (const m of [a, b, c]) await m.trainer.fit(data, { steps: 2, batchSize: 8, shuffle: false });
      const [wa, wb, wc] = [await all(a), await all(b), await all(c)];
      wb.forEach((w, i) => ref.expectExact(`parameter ${i}`, w, wa[i]));
      expect(ref.maxAbs(wc[6].map((v, i) => v - wa[6][i]))).toBeGreaterThan(1e-3); // an inverse's weight
      for (const m of [a, b, c]) m.trainer.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a short seeded run on a tiny problem: the loss falls', () => {
  test('DTP on 4 → 8 → 8 → 2 tanh', async () => {
    const rows = 64;
    const rng = new Random(31);
    const x = ref.randomArray(rng, rows * 4);
    const labels = Int32Array.from({ length: rows }, (_, r) => (x[r * 4] + 0.5 * x[r * 4 + 1] - x[r * 4 + 2] > 0 ? 1 : 0));
    const data = new Dataset('blobs', x, labels, 4, 2);
    const net = targetPropagation(new Sequential([new Linear(4, 8), new Tanh(), new Linear(8, 8), new Tanh(), new Linear(8, 2)]));
    const trainer = new Trainer(net, { device: cpu, optimizer: () => new Adam({ lr: 0.01 }), seed: 2 });
    const first = (await trainer.evaluate(data)).loss;
    await trainer.fit(data, { epochs: 30, batchSize: 16 });
    const last = (await trainer.evaluate(data)).loss;
    expect(last).toBeLessThan(0.6 * first);
    trainer.dispose();
  });
});
