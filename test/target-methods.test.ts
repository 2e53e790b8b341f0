// Difference target propagation and REINFORCE (ts/methods/target-propagation.ts, reinforce.ts)
// against float64 hand computations on tiny networks (the rules written out on arrays below,
// sharing no code with ts/methods/): DTP's targets with exact inverses and one full update
// (model and inverses, the noise redrawn from the seed); REINFORCE's estimate against the exact
// gradient of the expected loss (every unit configuration summed) and two updates given the
// sampled units; bad models refused before training; checkpoints that resume exactly; short
// seeded runs whose loss falls.
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
  Sigmoid,
  Tanh,
  Tensor,
  Trainer,
  reinforce,
  targetPropagation,
} from '../ts';
import type { StepContext } from '../ts';
import * as ref from './helpers/reference';
import {
  B,
  ceGrad,
  down,
  expectLossFalls,
  expectUnbiasedEstimate,
  expectUpdate,
  linear,
  lr,
  read,
  sgd,
  weightGrad,
} from './helpers/method-reference';

const cpu = Device.cpu();

// ---- float64 helpers ------------------------------------------------------------------------

const tanhBack = (dy: ArrayLike<number>, y: Float64Array) => y.map((v, k) => dy[k] * (1 - v * v));
const add = (a: ArrayLike<number>, b: ArrayLike<number>, s = 1) => Float64Array.from(a, (v, i) => v + s * b[i]);
/** the gradient of (1/B) Σ_b ||h_b − t_b||² */
const localGrad = (h: ArrayLike<number>, t: ArrayLike<number>) => Float64Array.from(h, (v, i) => (2 * (v - t[i])) / B);

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

// ---- REINFORCE ----------------------------------------------------------------------------------

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
/** The library's uniform draw for one unit: u in (0, 1), thresholded at logit(u) (float32). */
const threshold = (rng: Random) => {
  const u = (rng.nextUint32() + 0.5) / 4294967296;
  return Math.fround(Math.log(u / (1 - u)));
};

/** Per-example losses: cross-entropy of int labels, or the mean squared error of a row. */
function perExample(out: Float64Array, y: ArrayLike<number>, rows: number, K: number, kind: 'ce' | 'mse'): Float64Array {
  if (kind === 'mse')
    return Float64Array.from(
      { length: rows },
      (_, b) => out.slice(b * K, (b + 1) * K).reduce((s, v, k) => s + (v - y[b * K + k]) ** 2, 0) / K,
    );
  const p = ref.softmax(out, rows, K);
  return Float64Array.from({ length: rows }, (_, b) => -Math.log(p[b * K + y[b]]));
}

describe('REINFORCE: the estimate is unbiased', () => {
  test('the mean of 4800 seeded estimates is within 4 standard errors of the exact gradient of the expected loss (all 2³ unit configurations summed)', async () => {
    const net = reinforce(new Sequential([new Linear(2, 3), new Sigmoid(), new Linear(3, 2)]), { seed: 5 });
    const trainer = new Trainer(net, { device: cpu, optimizer: new SGD({ lr }), seed: 8 });
    await expectUnbiasedEstimate(trainer, net);
    trainer.dispose();
  });
});

describe('REINFORCE: updates equal a float64 hand computation given the sampled units', () => {
  test.each(['ce', 'mse'] as const)(
    'two SGD steps of Linear → Sigmoid → Linear → Sigmoid → Linear, loss %s, baseline decay 0.5',
    async (kind) => {
      const rng = new Random(81);
      const decay = 0.5;
      const K = 2;
      const net = reinforce(new Sequential([new Linear(3, 4), new Sigmoid(), new Linear(4, 3), new Sigmoid(), new Linear(3, K)]), {
        seed: 7,
        decay,
      });
      const trainer = new Trainer(net, {
        device: cpu,
        optimizer: new SGD({ lr }),
        seed: 2,
        ...(kind === 'mse' ? { loss: 'mse' as const } : {}),
      });
      let w = await Promise.all(net.parameters().map((q) => read(trainer, q.value)));
      const x = ref.randomArray(rng, B * 3);
      const y = kind === 'ce' ? ref.randomLabels(rng, B, K) : ref.randomArray(rng, B * K);
      const data = kind === 'ce' ? new Dataset('b', x, y as Int32Array, 3, K) : new Dataset('b', x, y as Float32Array, 3, K);
      await trainer.fit(data, { steps: 2, batchSize: B, shuffle: false });
      const after = await Promise.all(net.parameters().map((q) => read(trainer, q.value)));

      const draws = new Random(7);
      const sample = (zz: Float64Array) => zz.map((v) => (v > threshold(draws) ? 1 : 0));
      let beta = 0;
      for (let s = 0; s < 2; s++) {
        const [W0, b0, W1, b1, W2, b2] = w;
        const z0 = linear(x, W0, b0, 3, 4);
        const h0 = sample(z0);
        const z1 = linear(h0, W1, b1, 4, 3);
        const h1 = sample(z1);
        const out = linear(h1, W2, b2, 3, K);
        const L = perExample(out, y, B, K, kind);
        const e = kind === 'ce' ? ceGrad(out, y, K) : out.map((o, k) => (2 * (o - y[k])) / out.length);
        // dz = (1/B)(L_b − β)(h − p), row by row.
        const dz = (h: Float64Array, zz: Float64Array, n: number) =>
          h.map((v, k) => ((L[Math.floor(k / n)] - beta) * (v - sigmoid(zz[k]))) / B);
        const d0 = dz(h0, z0, 4);
        const d1 = dz(h1, z1, 3);
        w = [
          sgd(W0, weightGrad(d0, x, 3, 4)),
          sgd(b0, ref.columnSums(d0, B, 4)),
          sgd(W1, weightGrad(d1, h0, 4, 3)),
          sgd(b1, ref.columnSums(d1, B, 3)),
          sgd(W2, weightGrad(e, h1, 3, K)),
          sgd(b2, ref.columnSums(e, B, K)),
        ];
        beta = decay * beta + ((1 - decay) * L.reduce((a, v) => a + v, 0)) / B;
      }
      w.forEach((want, i) => expectUpdate(`parameter ${i}`, after[i], want));
      ref.expectClose('baseline', await read(trainer, net.baseline!), [beta], 1e-5, 1e-6);
      expect(beta).toBeGreaterThan(0.05);
      trainer.dispose();
    },
  );
});

describe('REINFORCE: a model, loss or option it does not cover is an error naming the problem, before training', () => {
  test('models, losses, options, graph capture', async () => {
    expect(() => reinforce(new Sequential([new Linear(3, 4), new Tanh(), new Linear(4, 2)]))).toThrow(
      /reinforce: layer 1 is Tanh where a Sigmoid belongs: REINFORCE here trains networks of stochastic Bernoulli units/,
    );
    expect(() => reinforce(new Sequential([new Linear(3, 4), new BatchNorm1d(4), new Sigmoid(), new Linear(4, 2)]))).toThrow(
      /layer 1 is BatchNorm1d\(4\) where a Sigmoid belongs/,
    );
    expect(() => reinforce(new Sequential([new Linear(3, 4), new Sigmoid()]))).toThrow(/ends with Sigmoid, not a Linear/);
    expect(() => reinforce(new Sequential([new Linear(3, 2)]))).toThrow(/no hidden layer/);
    expect(() => reinforce(new Linear(3, 2) as never)).toThrow(/reinforce: 'model' must be a Sequential/);
    const m = () => new Sequential([new Linear(3, 4), new Sigmoid(), new Linear(4, 2)]);
    expect(() => reinforce(m(), { decay: 1 })).toThrow(/'decay' must be in \[0, 1\), got 1/);
    expect(() => reinforce(m(), { decay: -0.1 })).toThrow(/'decay' must be in \[0, 1\), got -0.1/);
    expect(() => reinforce(m(), { seed: 1.5 })).toThrow(/'seed' must be an integer, got 1.5/);
    expect(() => reinforce(m(), { baseline: 'learned' } as never)).toThrow(/baseline/);
    const custom = { name: 'hinge', targetDType: 'int32', forward: () => ({}) };
    expect(() => new Trainer(reinforce(m()), { device: cpu, optimizer: new SGD({ lr }), loss: custom as never })).toThrow(
      /reinforce: the loss must be 'softmax-cross-entropy' or 'mse' .*, got hinge/,
    );
    const trainer = new Trainer(reinforce(m()), { device: cpu, optimizer: new SGD({ lr }), seed: 1 });
    const rng = new Random(3);
    const data = new Dataset('d', ref.randomArray(rng, 8 * 3), ref.randomLabels(rng, 8, 2), 3, 2);
    await expect(trainer.fit(data, { steps: 1, batchSize: 4, graph: true })).rejects.toThrow(
      /REINFORCE draws its units' samples on the host/,
    );
    trainer.dispose();
  });
});

describe('REINFORCE: checkpoints and a short run', () => {
  test('a run loaded from a checkpoint goes on as the saved one does (sampler and baseline saved)', async () => {
    const rng = new Random(72);
    const data = new Dataset('d', ref.randomArray(rng, 32 * 4), ref.randomLabels(rng, 32, 3), 4, 3);
    const make = (seed: number) => {
      const net = reinforce(new Sequential([new Linear(4, 6), new Sigmoid(), new Linear(6, 3)]));
      return { net, trainer: new Trainer(net, { device: cpu, optimizer: () => new Adam({ lr: 0.01 }), seed }) };
    };
    type Made = ReturnType<typeof make>;
    const all = (m: Made) => Promise.all([...m.net.parameters().map((q) => q.value), m.net.baseline!].map((t) => read(m.trainer, t)));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-reinforce-'));
    try {
      const a = make(1);
      await a.trainer.fit(data, { steps: 2, batchSize: 8, shuffle: false });
      const file = path.join(dir, 'r.ckpt');
      await a.trainer.save(file);
      const b = make(5);
      await b.trainer.load(file);
      const c = make(5);
      for (const m of [a, b, c]) await m.trainer.fit(data, { steps: 2, batchSize: 8, shuffle: false });
      const [wa, wb, wc] = [await all(a), await all(b), await all(c)];
      wb.forEach((w, i) => ref.expectExact(`tensor ${i}`, w, wa[i]));
      expect(ref.maxAbs(wc[0].map((v, i) => v - wa[0][i]))).toBeGreaterThan(1e-3);
      for (const m of [a, b, c]) m.trainer.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the loss falls on a tiny problem', () => expectLossFalls((m) => reinforce(m)));
});
