// Policy-gradient coagent networks (ts/methods/coagent.ts): two updates against a float64 hand
// computation given the sampled units (each hidden layer's policy gradient from its own input,
// sample and the critic's TD error; the critic's regression on the loss; the output layer's true
// gradient), refusals before training, seeded runs and checkpoints reproducible.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Adam, Arena, Dataset, Device, Linear, Random, SGD, Sequential, Sigmoid, Tanh, Trainer, coagent, reinforce } from '../ts';
import type { StepContext } from '../ts';
import * as ref from './helpers/reference';
import {
  B,
  ceGrad,
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

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));
/** The library's uniform draw for one unit: u in (0, 1), thresholded at logit(u) (float32). */
const threshold = (rng: Random) => {
  const u = (rng.nextUint32() + 0.5) / 4294967296;
  return Math.fround(Math.log(u / (1 - u)));
};

/** Per-example losses: cross-entropy of int labels, or the mean squared error of a row. */
function perExample(out: Float64Array, y: ArrayLike<number>, K: number, kind: 'ce' | 'mse'): Float64Array {
  if (kind === 'mse')
    return Float64Array.from(
      { length: B },
      (_, b) => out.slice(b * K, (b + 1) * K).reduce((s, v, k) => s + (v - y[b * K + k]) ** 2, 0) / K,
    );
  const p = ref.softmax(out, B, K);
  return Float64Array.from({ length: B }, (_, b) => -Math.log(p[b * K + y[b]]));
}

const model = (inF = 3, K = 2) => new Sequential([new Linear(inF, 4), new Sigmoid(), new Linear(4, 3), new Sigmoid(), new Linear(3, K)]);

describe('coagent networks: updates equal a float64 hand computation given the sampled units', () => {
  test.each(['ce', 'mse'] as const)(
    'two SGD steps of Linear → Sigmoid → Linear → Sigmoid → Linear and its critic, loss %s',
    async (kind) => {
      const rng = new Random(81);
      const K = 2;
      const net = coagent(model(3, K), { seed: 7 });
      const trainer = new Trainer(net, {
        device: cpu,
        optimizer: new SGD({ lr }),
        seed: 2,
        ...(kind === 'mse' ? { loss: 'mse' as const } : {}),
      });
      const critic = () => net.critic!.parameters().map((q) => read(trainer, q.value));
      let w = await Promise.all(net.parameters().map((q) => read(trainer, q.value)));
      let [v, c] = await Promise.all(critic());
      expect([...v, ...c]).toEqual([0, 0, 0, 0]); // V starts at 0, as REINFORCE's β does
      const x = ref.randomArray(rng, B * 3);
      const y = kind === 'ce' ? ref.randomLabels(rng, B, K) : ref.randomArray(rng, B * K);
      const data = kind === 'ce' ? new Dataset('b', x, y as Int32Array, 3, K) : new Dataset('b', x, y as Float32Array, 3, K);
      await trainer.fit(data, { steps: 2, batchSize: B, shuffle: false });
      const after = await Promise.all(net.parameters().map((q) => read(trainer, q.value)));
      const criticAfter = await Promise.all(critic());

      const draws = new Random(7);
      const sample = (zz: Float64Array) => zz.map((u) => (u > threshold(draws) ? 1 : 0));
      const values: Float64Array[] = [];
      for (let s = 0; s < 2; s++) {
        const [W0, b0, W1, b1, W2, b2] = w;
        const z0 = linear(x, W0, b0, 3, 4);
        const h0 = sample(z0);
        const z1 = linear(h0, W1, b1, 4, 3);
        const h1 = sample(z1);
        const out = linear(h1, W2, b2, 3, K);
        const L = perExample(out, y, K, kind);
        const e = kind === 'ce' ? ceGrad(out, y, K) : out.map((o, k) => (2 * (o - y[k])) / out.length);
        // The critic's value of each input and the TD error of the one-step episode: δ = −L − V(x).
        const V = linear(x, v, c, 3, 1);
        values.push(V);
        const td = L.map((l, b) => -l - V[b]);
        // Each coagent: dz = −(1/B)·δ_b·(h − p), from its own sample and probabilities only.
        const dz = (h: Float64Array, zz: Float64Array, n: number) => h.map((u, k) => (-td[Math.floor(k / n)] * (u - sigmoid(zz[k]))) / B);
        const d0 = dz(h0, z0, 4);
        const d1 = dz(h1, z1, 3);
        // The critic's regression on the reward r = −L: ∂/∂V of (1/2B)·Σ (V − r)² = (V − r)/B = −δ/B.
        const dV = td.map((t) => -t / B);
        w = [
          sgd(W0, weightGrad(d0, x, 3, 4)),
          sgd(b0, ref.columnSums(d0, B, 4)),
          sgd(W1, weightGrad(d1, h0, 4, 3)),
          sgd(b1, ref.columnSums(d1, B, 3)),
          sgd(W2, weightGrad(e, h1, 3, K)),
          sgd(b2, ref.columnSums(e, B, K)),
        ];
        [v, c] = [sgd(v, weightGrad(dV, x, 3, 1)), sgd(c, ref.columnSums(dV, B, 1))];
      }
      w.forEach((want, i) => expectUpdate(`parameter ${i}`, after[i], want));
      expectUpdate('critic weight', criticAfter[0], v);
      expectUpdate('critic bias', criticAfter[1], c);
      // The second step used a critic that differs from 0 (so the test sees its values, not just β = 0).
      expect(ref.maxAbs(values[1])).toBeGreaterThan(0.01);
      trainer.dispose();
    },
  );
});

describe('coagent networks: with a non-zero critic the estimate stays unbiased', () => {
  test('the mean of 4800 seeded estimates is within 4 standard errors of the exact gradient of the expected loss (all 2³ unit configurations summed)', async () => {
    const net = coagent(new Sequential([new Linear(2, 3), new Sigmoid(), new Linear(3, 2)]), { seed: 5 });
    const trainer = new Trainer(net, { device: cpu, optimizer: new SGD({ lr }), seed: 8 });
    // A critic far from 0, V(x0) = 0.3·0.7 + 0.2·0.4 − 0.6 = −0.31: an input-dependent baseline must not bias the estimate.
    const [cw, cb] = net.critic!.parameters();
    cw.value.write(Float32Array.from([0.3, -0.2]), trainer.stream);
    cb.value.write(Float32Array.from([-0.6]), trainer.stream);
    expect(Array.from(await read(trainer, cb.value))).toEqual([Math.fround(-0.6)]);
    await expectUnbiasedEstimate(trainer, net);
    trainer.dispose();
  });
});

describe('coagent networks: a model, loss or option it does not cover is an error naming the problem, before training', () => {
  test('models, losses, options, graph capture, use before initialize', async () => {
    expect(() => coagent(new Sequential([new Linear(3, 4), new Tanh(), new Linear(4, 2)]))).toThrow(
      /coagent: layer 1 is Tanh where a Sigmoid belongs: the coagent method here trains networks of stochastic Bernoulli units/,
    );
    expect(() => coagent(new Sequential([new Linear(3, 4), new Sigmoid()]))).toThrow(/coagent: the model ends with Sigmoid, not a Linear/);
    expect(() => coagent(new Sequential([new Linear(3, 2)]))).toThrow(/coagent: the model has no hidden layer/);
    expect(() => coagent(new Linear(3, 2) as never)).toThrow(/coagent: 'model' must be a Sequential/);
    const m = () => new Sequential([new Linear(3, 4), new Sigmoid(), new Linear(4, 2)]);
    // The critic replaces REINFORCE's running mean: there is no decay to set.
    expect(() => coagent(m(), { decay: 0.9 } as never)).toThrow(/coagent: unknown option 'decay'/);
    expect(() => coagent(m(), { seed: 1.5 })).toThrow(/coagent: 'seed' must be an integer, got 1.5/);
    expect(() => coagent(m(), null as never)).toThrow(/coagent: options must be an object/);
    const custom = { name: 'hinge', targetDType: 'int32', forward: () => ({}) };
    expect(() => new Trainer(coagent(m()), { device: cpu, optimizer: new SGD({ lr }), loss: custom as never })).toThrow(
      /coagent: the loss must be 'softmax-cross-entropy' or 'mse' .*, got hinge/,
    );
    const unready = coagent(m());
    const arena = new Arena();
    const ctx: StepContext = { device: cpu, stream: undefined as never, training: true, arena };
    expect(() => unready.accumulate(undefined as never, undefined as never, undefined as never, ctx)).toThrow(
      /Coagent\(.*\): used before initialize/,
    );
    arena.dispose();
    const trainer = new Trainer(coagent(m()), { device: cpu, optimizer: new SGD({ lr }), seed: 1 });
    const rng = new Random(3);
    const data = new Dataset('d', ref.randomArray(rng, 8 * 3), ref.randomLabels(rng, 8, 2), 3, 2);
    await expect(trainer.fit(data, { steps: 1, batchSize: 4, graph: true })).rejects.toThrow(
      /the coagent method draws its units' samples on the host/,
    );
    trainer.dispose();
  });
});

describe('coagent networks: seeded runs and checkpoints', () => {
  const rng = new Random(72);
  const data = new Dataset('d', ref.randomArray(rng, 32 * 4), ref.randomLabels(rng, 32, 3), 4, 3);
  const make = (seed: number) => {
    const net = coagent(new Sequential([new Linear(4, 6), new Sigmoid(), new Linear(6, 3)]));
    return { net, trainer: new Trainer(net, { device: cpu, optimizer: () => new Adam({ lr: 0.01 }), seed }) };
  };
  type Made = ReturnType<typeof make>;
  const all = (m: Made) =>
    Promise.all([...m.net.parameters(), ...m.net.critic!.parameters()].map((q) => q.value).map((t) => read(m.trainer, t)));

  test('two runs with the same seed end with the same weights and critic; another seed does not', async () => {
    const [a, b, c] = [make(4), make(4), make(9)];
    for (const m of [a, b, c]) await m.trainer.fit(data, { steps: 3, batchSize: 8, shuffle: false });
    const [wa, wb, wc] = [await all(a), await all(b), await all(c)];
    wb.forEach((w, i) => ref.expectExact(`tensor ${i}`, w, wa[i]));
    expect(ref.maxAbs(wc[0].map((v, i) => v - wa[0][i]))).toBeGreaterThan(1e-3);
    expect(ref.maxAbs(wa[wa.length - 2])).toBeGreaterThan(1e-4); // the critic learned
    for (const m of [a, b, c]) m.trainer.dispose();
  });

  test('a run loaded from a checkpoint goes on as the saved one does (sampler, critic and its optimizer state saved)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'synthgrad-coagent-'));
    try {
      const a = make(1);
      await a.trainer.fit(data, { steps: 2, batchSize: 8, shuffle: false });
      const file = path.join(dir, 'c.ckpt');
      await a.trainer.save(file);
      const b = make(5);
      await b.trainer.load(file);
      for (const m of [a, b]) await m.trainer.fit(data, { steps: 2, batchSize: 8, shuffle: false });
      const [wa, wb] = [await all(a), await all(b)];
      wb.forEach((w, i) => ref.expectExact(`tensor ${i}`, w, wa[i]));
      for (const m of [a, b]) m.trainer.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('coagent networks and REINFORCE', () => {
  test('with the critic at 0 the first update is REINFORCE’s with β = 0 (the same rule, the same samples)', async () => {
    const r = new Random(12);
    const data = new Dataset('d', ref.randomArray(r, B * 3), ref.randomLabels(r, B, 2), 3, 2);
    const weightsAfterOneStep = async (net: ReturnType<typeof coagent> | ReturnType<typeof reinforce>) => {
      const trainer = new Trainer(net, { device: cpu, optimizer: new SGD({ lr }), seed: 6 });
      await trainer.fit(data, { steps: 1, batchSize: B, shuffle: false });
      const w = await Promise.all(net.parameters().map((q) => read(trainer, q.value)));
      trainer.dispose();
      return w;
    };
    const co = await weightsAfterOneStep(coagent(model(), { seed: 3 }));
    const rf = await weightsAfterOneStep(reinforce(model(), { seed: 3 }));
    co.forEach((w, i) => ref.expectExact(`parameter ${i}`, w, rf[i]));
  });

  test('the loss falls on a tiny problem', () => expectLossFalls((m) => coagent(m)));
});
